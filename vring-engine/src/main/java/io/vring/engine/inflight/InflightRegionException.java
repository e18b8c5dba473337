package io.vring.engine.inflight;

/**
 * An inflight region the back-end refuses to trust: the front-end hands the region back after a
 * crash, so everything in it is checked before recovery acts on it.
 */
public final class InflightRegionException extends RuntimeException {
    /** What is wrong with the region. */
    public enum Kind {
        /** The mapping is smaller than the queues it must hold. */
        REGION_TOO_SMALL,
        /** The version field is neither 0 (fresh) nor 1. */
        UNSUPPORTED_VERSION,
        /** desc_num does not match the queue size the ring was started with. */
        QUEUE_SIZE_MISMATCH,
        /** A field holds a value no sequence of writes by a back-end could have left there. */
        CORRUPT,
        /** The region disagrees with the ring it is supposed to describe (the ring is the truth). */
        RING_MISMATCH,
        /** The buffer's description (number of queues, queue size) cannot describe a buffer at all. */
        INVALID_GEOMETRY
    }

    private final Kind kind;

    public InflightRegionException(Kind kind, String message) {
        super(kind + ": " + message);
        this.kind = kind;
    }

    /** What is wrong. */
    public Kind kind() {
        return kind;
    }
}
