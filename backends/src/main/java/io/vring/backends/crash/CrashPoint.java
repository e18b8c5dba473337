package io.vring.backends.crash;

/**
 * Where a crash-test trial kills the back-end. {@link #RANDOM} is the front-end's {@code kill -9} at an
 * instant of its choosing; the others are instants of the inflight protocol that the back-end reaches
 * itself and then SIGKILLs itself, so the moments a random kill rarely hits are each hit on purpose.
 */
enum CrashPoint {
    /** The front-end kills the back-end at a random instant while requests stream. */
    RANDOM("random instant"),
    /** poll() has just recorded a chain in the inflight region; the device has not started it. */
    AFTER_MARK("after marking a chain inflight"),
    /** A batch's used entries are published to the driver; none of its inflight entries is cleared yet. */
    BETWEEN_USED_AND_CLEAR("between publishing used and clearing inflight"),
    /** Half of a published batch's inflight entries are cleared. */
    MID_BATCH("in the middle of a batch"),
    /** A batch whose used entries run past the end of the ring is published, not yet cleared. */
    RING_WRAP("at a ring wrap");

    private final String description;

    CrashPoint(String description) {
        this.description = description;
    }

    /** True if the back-end reaches this point itself (everything but {@link #RANDOM}). */
    boolean isDeterministic() {
        return this != RANDOM;
    }

    String description() {
        return description;
    }

    /** The command-line spelling: {@code between-used-and-clear}. */
    String cliName() {
        return name().toLowerCase().replace('_', '-');
    }

    static CrashPoint ofCliName(String name) {
        return valueOf(name.toUpperCase().replace('-', '_'));
    }
}
