package io.vring.protocol.message;

import io.vring.protocol.VhostUserError;
import io.vring.protocol.VhostUserException;

/** How many fds may travel with a message: from {@code min} to {@code max}. */
public record FdRule(int min, int max) {
    /** The most fds any vhost-user message carries (8 memory regions; the back-end channel limit). */
    public static final int MAX_FDS = 8;

    private static final FdRule NONE = new FdRule(0, 0);
    private static final FdRule ONE = new FdRule(1, 1);
    private static final FdRule OPTIONAL = new FdRule(0, 1);

    public FdRule {
        if (min < 0 || max < min || max > MAX_FDS) {
            throw new IllegalArgumentException("fd rule min=" + min + " max=" + max);
        }
    }

    /** No fds. */
    public static FdRule none() {
        return NONE;
    }

    /** Exactly one fd. */
    public static FdRule one() {
        return ONE;
    }

    /**
     * Zero or one fd: the payload says which (the NOFD bit of a vring fd payload, a reply's flag), so
     * the handler checks the exact count once it has read the payload.
     */
    public static FdRule optional() {
        return OPTIONAL;
    }

    /** Up to {@code max} fds (one per memory region): the payload says how many exactly. */
    public static FdRule upTo(int max) {
        return new FdRule(0, max);
    }

    /** True if {@code count} fds are allowed. */
    public boolean accepts(int count) {
        return count >= min && count <= max;
    }

    /** Throws {@link VhostUserError#IncorrectFds} naming {@code what} unless {@code count} is accepted. */
    public void check(String what, int count) {
        if (!accepts(count)) {
            throw new VhostUserException(VhostUserError.IncorrectFds,
                    what + " expects " + this + " fd" + (max == 1 && min == 1 ? "" : "s") + ", got " + count);
        }
    }

    @Override
    public String toString() {
        return min == max ? Integer.toString(min) : min + ".." + max;
    }
}
