package io.vring.protocol.message;

import io.vring.protocol.VhostUserError;
import io.vring.protocol.VhostUserException;

/**
 * The payload sizes a message may have: {@code min + k * step} for {@code k >= 0} up to {@code max}.
 * A fixed size has {@code min == max}; "no payload" is the fixed size 0.
 */
public record SizeRule(int min, int max, int step) {
    private static final SizeRule NONE = new SizeRule(0, 0, 1);

    public SizeRule {
        if (min < 0 || max < min || step < 1) {
            throw new IllegalArgumentException("size rule min=" + min + " max=" + max + " step=" + step);
        }
    }

    /** No payload at all. */
    public static SizeRule none() {
        return NONE;
    }

    /** Exactly {@code size} bytes. */
    public static SizeRule exactly(int size) {
        return new SizeRule(size, size, 1);
    }

    /** Any size from {@code min} to {@code max} bytes. */
    public static SizeRule between(int min, int max) {
        return new SizeRule(min, max, 1);
    }

    /** {@code min}, {@code min + step}, ... up to {@code max}: a header and an array of entries. */
    public static SizeRule stepping(int min, int max, int step) {
        return new SizeRule(min, max, step);
    }

    /** True if a payload of {@code size} bytes obeys this rule. */
    public boolean accepts(long size) {
        return size >= min && size <= max && (size - min) % step == 0;
    }

    /** True if only one size is allowed. */
    public boolean isFixed() {
        return min == max;
    }

    /**
     * Throws {@link VhostUserError#InvalidMessage} naming {@code what} unless {@code size} is accepted.
     */
    public void check(String what, long size) {
        if (!accepts(size)) {
            throw new VhostUserException(VhostUserError.InvalidMessage,
                    what + " payload must be " + this + " bytes, got " + size);
        }
    }

    @Override
    public String toString() {
        if (isFixed()) {
            return Integer.toString(min);
        }
        return step == 1 ? min + ".." + max : min + "+" + step + "n.." + max;
    }
}
