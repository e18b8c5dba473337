package io.vring.engine.inflight;

/**
 * Byte layout of the inflight region of packed queues (vhost-user INFLIGHT_SHMFD, reference §5.2 and
 * §5.5, little-endian), the layout DPDK writes. The buffer is {@code numQueues} queue regions of one
 * {@link #stride stride} each; a queue region is a 32-byte header followed by one 32-byte entry per
 * ring descriptor, indexed by position in the region's own free list (not by ring slot).
 */
public final class PackedInflightLayout {
    /** Alignment of each queue region, and of the stride (INFLIGHT_ALIGNMENT). */
    public static final int ALIGNMENT = 64;
    /** Header size: 29 bytes of fields and padding, then C padding up to the 8-byte-aligned entries. */
    public static final int HEADER_SIZE = 32;

    /** Header: features, u64; always 0. */
    public static final int FEATURES = 0;
    /** Header: version, u16; 1 for this layout, 0 for a buffer nobody has initialised. */
    public static final int VERSION = 8;
    /** Header: desc_num, u16; the queue size. */
    public static final int DESC_NUM = 10;
    /** Header: free_head, u16; first entry of the free list, moving while a chain is recorded. */
    public static final int FREE_HEAD = 12;
    /** Header: old_free_head, u16; free_head as of the last complete fetch or publication. */
    public static final int OLD_FREE_HEAD = 14;
    /** Header: used_idx, u16; the device's used ring slot, moving while a batch is published. */
    public static final int USED_IDX = 16;
    /** Header: old_used_idx, u16; used_idx as of the last publication that finished. */
    public static final int OLD_USED_IDX = 18;
    /** Header: used_wrap_counter, u8; the device's used wrap counter that goes with used_idx. */
    public static final int USED_WRAP_COUNTER = 20;
    /** Header: old_used_wrap_counter, u8; the wrap counter that goes with old_used_idx. */
    public static final int OLD_USED_WRAP_COUNTER = 21;
    /** Header: the 8-byte-aligned word that holds all four used fields (offsets 16-23, padding included). */
    public static final int USED_WORD = USED_IDX;
    /** Header: desc[desc_num] starts here. */
    public static final int DESC = HEADER_SIZE;

    /** Entry (DescStatePacked) size. */
    public static final int ENTRY_SIZE = 32;
    /** Entry: inflight, u8; 1 on the first entry of a recorded chain until its used entry is published. */
    public static final int ENTRY_INFLIGHT = 0;
    /** Entry: next, u16; next entry of the free list, or of the chain. */
    public static final int ENTRY_NEXT = 2;
    /** Entry: last, u16; last entry of this chain (first entries only). */
    public static final int ENTRY_LAST = 4;
    /** Entry: num, u16; ring descriptors in this chain (first entries only). */
    public static final int ENTRY_NUM = 6;
    /** Entry: counter, u64; the order in which the device fetched its chains (first entries only). */
    public static final int ENTRY_COUNTER = 8;
    /** Entry: id, u16; buffer id of the ring descriptor. */
    public static final int ENTRY_ID = 16;
    /** Entry: flags, u16; flags of the ring descriptor. */
    public static final int ENTRY_FLAGS = 18;
    /** Entry: len, u32; length of the ring descriptor. */
    public static final int ENTRY_LEN = 20;
    /** Entry: addr, u64; guest address of the ring descriptor. */
    public static final int ENTRY_ADDR = 24;

    /** The one version this layout has. */
    public static final int VERSION_1 = 1;

    /** Bytes of one queue's region: alignUp(32 + 32 * queueSize, 64) (DPDK's alignUp(32Q + 29, 64)). */
    public static long stride(int queueSize) {
        return SplitInflightLayout.alignUp(HEADER_SIZE + (long) ENTRY_SIZE * queueSize);
    }

    /** Bytes of the whole buffer: {@code numQueues} strides (the mmap_size of GET_INFLIGHT_FD). */
    public static long regionSize(int numQueues, int queueSize) {
        return numQueues * stride(queueSize);
    }

    /** Offset of queue {@code queueIndex}'s region in the buffer. */
    public static long queueOffset(int queueIndex, int queueSize) {
        return queueIndex * stride(queueSize);
    }

    /** Offset of entry {@code index} in a queue region. */
    public static long entry(int index) {
        return DESC + (long) ENTRY_SIZE * index;
    }

    private PackedInflightLayout() {
    }
}
