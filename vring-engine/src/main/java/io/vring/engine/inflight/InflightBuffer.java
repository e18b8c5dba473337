package io.vring.engine.inflight;

import io.vring.engine.RingKind;
import io.vring.engine.packed.PackedLayout;
import io.vring.engine.split.SplitLayout;

import java.lang.foreign.MemorySegment;

/**
 * The whole inflight buffer of one vhost-user connection (INFLIGHT_SHMFD, reference §5.1-5.2): the
 * mapping the front-end hands over with SET_INFLIGHT_FD, {@code numQueues} queue regions of one
 * stride each, in the layout of the negotiated ring kind. What a device queue takes in
 * {@link io.vring.engine.DeviceQueue#trackInflight}.
 *
 * <p>The control plane sizes a new buffer with {@link #size} (GET_INFLIGHT_FD's mmap_size) and hands
 * it over zero-filled: version 0 means "never started", and each queue lays out its own region at its
 * first start, at the ring's real position (a region laid out at GET time would claim used index 0,
 * which is wrong for a ring that starts elsewhere, after a migration for instance).
 *
 * <p>Nothing in the buffer is trusted: {@link #of} checks that the mapping holds the queues it claims,
 * and every queue validates its own region before it acts on it.
 */
public final class InflightBuffer {
    private final RingKind kind;
    private final MemorySegment segment;
    private final int numQueues;
    private final int queueSize;
    private final StoreProbe probe;

    private InflightBuffer(RingKind kind, MemorySegment segment, int numQueues, int queueSize, StoreProbe probe) {
        this.kind = kind;
        this.segment = segment;
        this.numQueues = numQueues;
        this.queueSize = queueSize;
        this.probe = probe;
    }

    /** Bytes of one queue's region: split alignUp(16 + 16·Q, 64), packed alignUp(32 + 32·Q, 64). */
    public static long stride(RingKind kind, int queueSize) {
        return kind == RingKind.PACKED ? PackedInflightLayout.stride(queueSize) : SplitInflightLayout.stride(queueSize);
    }

    /** Bytes of a buffer for {@code numQueues} queues of {@code queueSize}: the mmap_size of GET_INFLIGHT_FD. */
    public static long size(RingKind kind, int numQueues, int queueSize) {
        requireGeometry(kind, numQueues, queueSize);
        return numQueues * stride(kind, queueSize);
    }

    /**
     * The buffer mapped at SET_INFLIGHT_FD, described by the num_queues and queue_size of that message.
     *
     * @param segment the mapping, native and 8-byte aligned (an mmap is page-aligned)
     * @throws InflightRegionException INVALID_GEOMETRY for a queue count or size that cannot be, or
     *                                 REGION_TOO_SMALL if the mapping cannot hold the queues
     */
    public static InflightBuffer of(RingKind kind, MemorySegment segment, int numQueues, int queueSize) {
        return of(kind, segment, numQueues, queueSize, null);
    }

    static InflightBuffer of(RingKind kind, MemorySegment segment, int numQueues, int queueSize, StoreProbe probe) {
        if (kind == null || segment == null) {
            throw new IllegalArgumentException("ring kind and segment are required");
        }
        // The widest field is a u64 at an 8-byte offset of a region, and strides are multiples of 64.
        if (!segment.isNative() || (segment.address() & (Long.BYTES - 1)) != 0) {
            throw new IllegalArgumentException("an inflight buffer must be a native mapping aligned to "
                    + Long.BYTES + " bytes, got " + segment);
        }
        long needed = size(kind, numQueues, queueSize);
        if (segment.byteSize() < needed) {
            throw new InflightRegionException(InflightRegionException.Kind.REGION_TOO_SMALL,
                    "inflight buffer of " + segment.byteSize() + " bytes cannot hold " + numQueues + " "
                            + kind.name().toLowerCase() + " queues of size " + queueSize + " (needs " + needed + ")");
        }
        return new InflightBuffer(kind, segment, numQueues, queueSize, probe);
    }

    /**
     * Test seam: the same mapping, whose queues tell {@code probe} around every store they make to
     * it, so a crash test can stop a back-end at a chosen instant of the inflight protocol. A buffer
     * made by {@link #of} has no probe and pays one null check per store.
     */
    public InflightBuffer withProbe(StoreProbe probe) {
        return new InflightBuffer(kind, segment, numQueues, queueSize, probe);
    }

    private static void requireGeometry(RingKind kind, int numQueues, int queueSize) {
        int maxSize = kind == RingKind.PACKED ? PackedLayout.MAX_QUEUE_SIZE : SplitLayout.MAX_QUEUE_SIZE;
        if (numQueues < 1 || numQueues > 0xFFFF || !kind.isValidSize(queueSize)) {
            throw new InflightRegionException(InflightRegionException.Kind.INVALID_GEOMETRY,
                    "an inflight buffer of " + numQueues + " " + kind.name().toLowerCase() + " queues of size "
                            + queueSize + " cannot be (1 to 65535 queues, sizes up to " + maxSize
                            + (kind == RingKind.SPLIT ? ", a power of two" : "") + ")");
        }
    }

    /** The ring kind whose layout the buffer has. */
    public RingKind kind() {
        return kind;
    }

    /** Queue regions in the buffer. */
    public int numQueues() {
        return numQueues;
    }

    /** The queue size every region is laid out for; a ring of another size cannot use it. */
    public int queueSize() {
        return queueSize;
    }

    /** The mapping. */
    public MemorySegment segment() {
        return segment;
    }

    /**
     * The checks a device queue makes before it attaches this region: once per queue, before the
     * first chain is polled (recovery decides where polling starts), and of the queue's ring kind.
     *
     * @throws IllegalStateException    if the queue tracks already or has polled
     * @throws IllegalArgumentException if this region is for the other ring kind
     */
    public void checkAttachable(String queueName, RingKind queueKind, boolean alreadyTracking, boolean polled) {
        if (alreadyTracking) {
            throw new IllegalStateException(queueName + ": inflight tracking is already on");
        }
        if (polled) {
            throw new IllegalStateException(queueName + ": chains were polled before inflight tracking"
                    + " started; start it right after creating the queue");
        }
        if (kind != queueKind) {
            throw new IllegalArgumentException(queueName + " is a " + queueKind.name().toLowerCase(java.util.Locale.ROOT)
                    + " queue, the inflight buffer is " + kind);
        }
    }

    /** The region of split queue {@code queueIndex}. */
    public SplitInflightQueue splitQueue(int queueIndex) {
        requireKind(RingKind.SPLIT);
        requireQueue(queueIndex);
        return SplitInflightQueue.of(segment, queueIndex, queueSize, probe);
    }

    /** The region of packed queue {@code queueIndex}. */
    public PackedInflightQueue packedQueue(int queueIndex) {
        requireKind(RingKind.PACKED);
        requireQueue(queueIndex);
        return PackedInflightQueue.of(segment, queueIndex, queueSize, probe);
    }

    private void requireKind(RingKind wanted) {
        if (kind != wanted) {
            throw new IllegalArgumentException("the inflight buffer has the " + kind + " layout, the queue is " + wanted);
        }
    }

    private void requireQueue(int queueIndex) {
        if (queueIndex < 0 || queueIndex >= numQueues) {
            throw new InflightRegionException(InflightRegionException.Kind.REGION_TOO_SMALL,
                    "queue " + queueIndex + " is not among the " + numQueues + " queues of the inflight buffer");
        }
    }

    @Override
    public String toString() {
        return "InflightBuffer[" + kind + ", " + numQueues + " queues of " + queueSize + ", " + segment.byteSize() + " bytes]";
    }
}
