package io.vring.engine.packed;

/**
 * Byte layout of a packed virtqueue (virtio 1.x "Packed Virtqueues", little-endian): one descriptor
 * ring that both sides write, and two 4-byte event suppression structures. Every offset the engine
 * uses is named here; nothing else writes a literal ring offset.
 */
public final class PackedLayout {
    /** A ring descriptor: addr u64, len u32, id u16, flags u16 (note: id before flags, unlike split). */
    public static final int DESC_SIZE = 16;
    /** Descriptor field: guest-physical buffer address (unused in used descriptors). */
    public static final int DESC_ADDR = 0;
    /** Descriptor field: buffer length; in a used descriptor, bytes the device wrote. */
    public static final int DESC_LEN = 8;
    /** Descriptor field: buffer id, carried by the last descriptor of a list and echoed when used. */
    public static final int DESC_ID = 12;
    /** Descriptor field: flags, the publication signal of a slot. */
    public static final int DESC_FLAGS = 14;

    /** Flag: the list continues in the next ring slot. */
    public static final int F_NEXT = 1;
    /** Flag: the buffer is device-writable; on a used descriptor, len is valid. */
    public static final int F_WRITE = 2;
    /** Flag: addr/len point at a table of descriptors laid out one after another. */
    public static final int F_INDIRECT = 4;
    /** Bit number of the AVAIL flag (Linux VRING_PACKED_DESC_F_AVAIL). */
    public static final int AVAIL_BIT = 7;
    /** Bit number of the USED flag (Linux VRING_PACKED_DESC_F_USED). */
    public static final int USED_BIT = 15;
    /** Flag: the driver's wrap counter when it made the slot available. */
    public static final int F_AVAIL = 1 << AVAIL_BIT;
    /** Flag: the device's wrap counter when it marked the slot used. */
    public static final int F_USED = 1 << USED_BIT;

    /** Event suppression field (u16): desc_event_off in bits 0-14, desc_event_wrap in bit 15. */
    public static final int EVENT_OFF_WRAP = 0;
    /** Event suppression field (u16): desc_event_flags in bits 0-1, the rest reserved. */
    public static final int EVENT_FLAGS = 2;
    /** Bit of off_wrap that holds the wrap counter of the event slot. */
    public static final int EVENT_WRAP_BIT = 15;
    /** Mask of the slot number in off_wrap. */
    public static final int EVENT_OFF_MASK = (1 << EVENT_WRAP_BIT) - 1;
    /** Where flags land when the structure is read as one little-endian u32. */
    public static final int EVENT_FLAGS_SHIFT = 8 * EVENT_FLAGS;
    /** Mask of the meaningful bits of desc_event_flags. */
    public static final int EVENT_FLAGS_MASK = 3;
    /** desc_event_flags: notify on every event. */
    public static final int RING_EVENT_FLAGS_ENABLE = 0;
    /** desc_event_flags: do not notify. */
    public static final int RING_EVENT_FLAGS_DISABLE = 1;
    /** desc_event_flags: notify when the slot in off_wrap is passed (needs VIRTIO_F_EVENT_IDX). */
    public static final int RING_EVENT_FLAGS_DESC = 2;

    /** Alignment of the descriptor ring (Descriptor Area). */
    public static final int DESC_RING_ALIGN = 16;
    /** Size of each event suppression structure (Driver Area and Device Area). */
    public static final int EVENT_AREA_SIZE = 4;
    /** Alignment of each event suppression structure. */
    public static final int EVENT_AREA_ALIGN = 4;
    /** Largest packed queue: slot numbers must fit in the 15 bits of off_wrap. */
    public static final int MAX_QUEUE_SIZE = 1 << 15;

    /** Bytes of the descriptor ring of a queue of {@code queueSize} slots. */
    public static long descriptorRingSize(int queueSize) {
        return (long) DESC_SIZE * queueSize;
    }

    /** Byte offset of ring slot (or table entry) {@code slot}. */
    public static long descriptorOffset(int slot) {
        return (long) slot * DESC_SIZE;
    }

    /** AVAIL/USED bits the driver writes to make a slot available in a lap with wrap counter {@code wrap}. */
    public static int availableFlags(int wrap) {
        return (wrap << AVAIL_BIT) | ((wrap ^ 1) << USED_BIT);
    }

    /** AVAIL/USED bits the device writes to mark a slot used in a lap with wrap counter {@code wrap}. */
    public static int usedFlags(int wrap) {
        return (wrap << AVAIL_BIT) | (wrap << USED_BIT);
    }

    /** True if {@code flags} say "newly available" to a reader whose wrap counter is {@code wrap}. */
    public static boolean isAvailable(int flags, int wrap) {
        return ((flags >>> AVAIL_BIT) & 1) == wrap && ((flags >>> USED_BIT) & 1) != wrap;
    }

    /** True if {@code flags} say "newly used" to a reader whose wrap counter is {@code wrap}. */
    public static boolean isUsed(int flags, int wrap) {
        return ((flags >>> AVAIL_BIT) & 1) == wrap && ((flags >>> USED_BIT) & 1) == wrap;
    }

    /** The event structure as one little-endian u32: flags in the high half, off_wrap in the low. */
    public static int eventWord(int flags, int slot, int wrap) {
        return (flags << EVENT_FLAGS_SHIFT) | (wrap << EVENT_WRAP_BIT) | slot;
    }

    private PackedLayout() {
    }
}
