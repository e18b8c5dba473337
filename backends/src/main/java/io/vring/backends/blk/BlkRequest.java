package io.vring.backends.blk;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;

/**
 * One request slot: what an I/O thread needs to carry out a request, copied out of the (reused)
 * descriptor chain by the ring worker, and what it hands back. Slots are made when a ring starts
 * and reused for its whole life; the buffer arrays only grow, to the widest request seen.
 *
 * <p>Ownership passes with the slot: the ring worker fills it, the I/O pool's queue hands it to one
 * I/O thread (release/acquire through the queue), which sets the result and hands it back through
 * the ring's completion queue. Exactly one thread touches a slot at a time, so its fields are plain.
 */
final class BlkRequest {
    /** Most buffers one request's data may span: seg_max plus splits at guest memory region edges. */
    static final int MAX_BUFFERS = 1024;
    /** Most ranges in one DISCARD / WRITE_ZEROES request (the config's max_*_seg). */
    static final int MAX_RANGES = 8;

    final BlkRing ring;

    /** What {@code addUsed(token, len)} takes. */
    int token;
    /** Order of submission on its ring: a completion with a lower one than an earlier completion is out of order. */
    long sequence;
    /** BlkLayout.T_IN, T_OUT, T_FLUSH or T_WRITE_ZEROES: the types that reach an I/O thread. */
    int type;
    /** Byte offset on the disk (IN, OUT). */
    long diskOffset;
    /** Writes must be durable before completion (the driver turned writeback off). */
    boolean writethrough;

    MemorySegment[] segments = new MemorySegment[8];
    long[] offsets = new long[8];
    int[] lengths = new int[8];
    int bufferCount;
    long dataBytes;

    final long[] rangeOffsets = new long[MAX_RANGES];
    final long[] rangeLengths = new long[MAX_RANGES];
    int rangeCount;

    /** Where the status byte goes: the chain's last writable byte. */
    MemorySegment statusSegment;
    long statusOffset;

    /** Result, set by the I/O thread. */
    byte status;
    /** Bytes written into the chain's writable part, status byte included. */
    int usedLength;

    BlkRequest(BlkRing ring) {
        this.ring = ring;
    }

    /** Starts filling the slot for a new chain. */
    void begin(int token, int type, MemorySegment statusSegment, long statusOffset) {
        this.token = token;
        this.type = type;
        this.statusSegment = statusSegment;
        this.statusOffset = statusOffset;
        this.bufferCount = 0;
        this.dataBytes = 0;
        this.rangeCount = 0;
        this.diskOffset = 0;
        this.writethrough = false;
        this.status = BlkLayout.S_IOERR;
        this.usedLength = 1;
    }

    /** Adds a data buffer; false if the request already has {@link #MAX_BUFFERS}. Grows only to a new widest request. */
    boolean addBuffer(MemorySegment segment, long offset, int length) {
        if (bufferCount == MAX_BUFFERS) {
            return false;
        }
        if (bufferCount == segments.length) {
            int n = Math.min(segments.length * 2, MAX_BUFFERS);
            segments = Arrays.copyOf(segments, n);
            offsets = Arrays.copyOf(offsets, n);
            lengths = Arrays.copyOf(lengths, n);
        }
        segments[bufferCount] = segment;
        offsets[bufferCount] = offset;
        lengths[bufferCount] = length;
        bufferCount++;
        dataBytes += length;
        return true;
    }

    /** Adds a DISCARD / WRITE_ZEROES range in bytes; the caller checked {@link #MAX_RANGES}. */
    void addRange(long offset, long length) {
        rangeOffsets[rangeCount] = offset;
        rangeLengths[rangeCount] = length;
        rangeCount++;
    }

    /** Writes the status byte into guest memory. */
    void writeStatus() {
        statusSegment.set(ValueLayout.JAVA_BYTE, statusOffset, status);
    }

    /** Drops references into guest memory, so an unmapped region's segments are not kept reachable. */
    void forgetMemory() {
        Arrays.fill(segments, 0, bufferCount, null);
        bufferCount = 0;
        statusSegment = null;
    }
}
