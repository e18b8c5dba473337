package io.vring.engine.inflight;

/**
 * Byte layout of the inflight region of split queues (vhost-user INFLIGHT_SHMFD, reference §5.2-5.3,
 * little-endian), the layout QEMU hands back to libvhost-user and DPDK back-ends. The buffer is
 * {@code numQueues} queue regions of one {@link #stride stride} each; a queue region is a 16-byte
 * header followed by one 16-byte entry per descriptor, indexed by head descriptor index.
 */
public final class SplitInflightLayout {
    /** Alignment of each queue region, and of the stride (INFLIGHT_ALIGNMENT). */
    public static final int ALIGNMENT = 64;
    /** Header size; the entry array starts right after it. */
    public static final int HEADER_SIZE = 16;

    /** Header: features, u64; always 0. */
    public static final int FEATURES = 0;
    /** Header: version, u16; 1 for this layout, 0 for a buffer nobody has initialised. */
    public static final int VERSION = 8;
    /** Header: desc_num, u16; the queue size. */
    public static final int DESC_NUM = 10;
    /** Header: last_batch_head, u16; first head of the list of heads of the batch being published. */
    public static final int LAST_BATCH_HEAD = 12;
    /** Header: used_idx, u16; the used ring's idx after the last batch whose publication finished. */
    public static final int USED_IDX = 14;
    /** Header: desc[desc_num] starts here. */
    public static final int DESC = HEADER_SIZE;

    /** Entry (DescStateSplit) size. */
    public static final int ENTRY_SIZE = 16;
    /** Entry: inflight, u8; 1 while the head is popped and its used entry not yet published. */
    public static final int ENTRY_INFLIGHT = 0;
    /** Entry: next, u16; link to the previous head of the same publication batch. */
    public static final int ENTRY_NEXT = 6;
    /** Entry: counter, u64; the order in which the device popped its heads. */
    public static final int ENTRY_COUNTER = 8;

    /** The one version this layout has. */
    public static final int VERSION_1 = 1;

    /** Bytes of one queue's region: alignUp(16 + 16 * queueSize, 64). */
    public static long stride(int queueSize) {
        return alignUp(HEADER_SIZE + (long) ENTRY_SIZE * queueSize);
    }

    /** Bytes of the whole buffer: {@code numQueues} strides (the mmap_size of GET_INFLIGHT_FD). */
    public static long regionSize(int numQueues, int queueSize) {
        return numQueues * stride(queueSize);
    }

    /** Offset of queue {@code queueIndex}'s region in the buffer. */
    public static long queueOffset(int queueIndex, int queueSize) {
        return queueIndex * stride(queueSize);
    }

    /** Offset of the entry of head descriptor {@code head} in a queue region. */
    public static long entry(int head) {
        return DESC + (long) ENTRY_SIZE * head;
    }

    static long alignUp(long bytes) {
        return (bytes + ALIGNMENT - 1) & -ALIGNMENT;
    }

    private SplitInflightLayout() {
    }
}
