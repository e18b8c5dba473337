package io.vring.engine.split;

/**
 * Byte layout of a split virtqueue's three areas (virtio 1.x §2.7, little-endian). Every ring offset
 * the split queues use is one of these constants.
 */
public final class SplitLayout {
    /** Descriptor table entry size: addr u64, len u32, flags u16, next u16. */
    public static final int DESC_SIZE = 16;
    /** Descriptor: guest-physical buffer address, u64. */
    public static final int DESC_ADDR = 0;
    /** Descriptor: buffer length in bytes (table length for INDIRECT), u32. */
    public static final int DESC_LEN = 8;
    /** Descriptor: flags, u16. */
    public static final int DESC_FLAGS = 12;
    /** Descriptor: index of the next descriptor when NEXT is set, u16. */
    public static final int DESC_NEXT = 14;

    /** Descriptor flag: the chain continues at {@code next}. */
    public static final int F_NEXT = 1;
    /** Descriptor flag: the buffer is device-writable. */
    public static final int F_WRITE = 2;
    /** Descriptor flag: the buffer is a table of descriptors. */
    public static final int F_INDIRECT = 4;

    /** Driver area (available ring): flags u16. */
    public static final int AVAIL_FLAGS = 0;
    /** Driver area: idx u16, where the driver puts the next entry (free-running). */
    public static final int AVAIL_IDX = 2;
    /** Driver area: ring[N] of u16 head indices starts here. */
    public static final int AVAIL_RING = 4;
    /** Driver area flag: the driver asks not to be interrupted (ignored with EVENT_IDX). */
    public static final int AVAIL_F_NO_INTERRUPT = 1;

    /** Device area (used ring): flags u16. */
    public static final int USED_FLAGS = 0;
    /** Device area: idx u16 (free-running). */
    public static final int USED_IDX = 2;
    /** Device area: ring[N] of {id u32, len u32} starts here. */
    public static final int USED_RING = 4;
    /** Used element size. */
    public static final int USED_ELEM_SIZE = 8;
    /** Used element: head index of the used chain, u32. */
    public static final int USED_ELEM_ID = 0;
    /** Used element: bytes written into the chain's writable part, u32. */
    public static final int USED_ELEM_LEN = 4;
    /** Device area flag: the device asks not to be kicked (ignored with EVENT_IDX). */
    public static final int USED_F_NO_NOTIFY = 1;

    /** Required alignment of the descriptor table. */
    public static final int DESC_ALIGN = 16;
    /** Required alignment of the driver area. */
    public static final int AVAIL_ALIGN = 2;
    /** Required alignment of the device area. */
    public static final int USED_ALIGN = 4;
    /** Largest queue size: a power of two that free-running u16 indices can tell full from empty. */
    public static final int MAX_QUEUE_SIZE = 32768;

    /** Bytes of the descriptor table. */
    public static long descriptorAreaSize(int queueSize) {
        return (long) DESC_SIZE * queueSize;
    }

    /** Bytes of the driver area, used_event included. */
    public static long driverAreaSize(int queueSize) {
        return 6L + 2L * queueSize;
    }

    /** Bytes of the device area, avail_event included. */
    public static long deviceAreaSize(int queueSize) {
        return 6L + (long) USED_ELEM_SIZE * queueSize;
    }

    /** Offset of avail ring entry {@code slot}. */
    public static long availRingEntry(int slot) {
        return AVAIL_RING + 2L * slot;
    }

    /** Offset of used_event in the driver area (EVENT_IDX). */
    public static long usedEventOffset(int queueSize) {
        return AVAIL_RING + 2L * queueSize;
    }

    /** Offset of used ring element {@code slot}. */
    public static long usedRingEntry(int slot) {
        return USED_RING + (long) USED_ELEM_SIZE * slot;
    }

    /** Offset of avail_event in the device area (EVENT_IDX). */
    public static long availEventOffset(int queueSize) {
        return USED_RING + (long) USED_ELEM_SIZE * queueSize;
    }

    /** A valid split queue size: a power of two from 1 to 32768. */
    public static boolean isValidQueueSize(int size) {
        return size >= 1 && size <= MAX_QUEUE_SIZE && Integer.bitCount(size) == 1;
    }

    private SplitLayout() {
    }
}
