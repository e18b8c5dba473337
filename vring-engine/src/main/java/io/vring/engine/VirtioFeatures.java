package io.vring.engine;

/** Device-independent virtio feature bits (virtio 1.x, section 6) that change how a ring behaves. */
public final class VirtioFeatures {
    /** Legacy: notify when the driver runs out of available buffers even if suppressed. */
    public static final int NOTIFY_ON_EMPTY = 24;
    /** Descriptors may point at tables of descriptors. */
    public static final int INDIRECT_DESC = 28;
    /** used_event / avail_event (split) and DESC event suppression (packed). */
    public static final int EVENT_IDX = 29;
    /** Little-endian modern layout; every device offers it. */
    public static final int VERSION_1 = 32;
    /** Addresses are IOVAs translated by an IOMMU. Not supported by the engine. */
    public static final int ACCESS_PLATFORM = 33;
    /** The packed ring layout. */
    public static final int RING_PACKED = 34;
    /** Buffers are used in the order they were made available; batched used entries allowed. */
    public static final int IN_ORDER = 35;

    /**
     * The ring features the engine implements for every device, as a mask: VERSION_1, EVENT_IDX,
     * INDIRECT_DESC and RING_PACKED. IN_ORDER is not in it: it promises that the device completes
     * chains in the order they came, so only a device that does may add {@code bit(IN_ORDER)}.
     */
    public static final long RING_FEATURES = (1L << VERSION_1) | (1L << EVENT_IDX) | (1L << INDIRECT_DESC)
            | (1L << RING_PACKED);

    /** The mask of feature bit {@code bit}. */
    public static long bit(int bit) {
        return 1L << bit;
    }

    /** True if {@code bit} is set in {@code features}. */
    public static boolean has(long features, int bit) {
        return (features & (1L << bit)) != 0;
    }

    private VirtioFeatures() {
    }
}
