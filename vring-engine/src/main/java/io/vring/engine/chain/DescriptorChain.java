package io.vring.engine.chain;

import io.vring.engine.memory.GuestMemory;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * A reusable flyweight over one descriptor chain that a device queue has popped: its buffers,
 * device-readable ones first, then device-writable ones, each already translated and checked against
 * guest memory.
 *
 * <p>Buffer {@code i} is the byte range {@code [offset(i), offset(i) + length(i))} of
 * {@code segment(i)}, which is the mapping of a whole guest region; reading it through
 * {@link MemorySegment#copy} or a {@code ValueLayout} accessor allocates nothing. A descriptor whose
 * buffer crosses from one region into a GPA-adjacent one yields one buffer per region.
 *
 * <p>One instance belongs to one queue and is re-pointed at each chain that {@code poll()} returns;
 * it is valid until the next {@code poll()} on that queue. A device that keeps several chains in
 * flight keeps their {@link #token()}s and completes them with {@code addUsed(token, len)}.
 * Not thread-safe: it belongs to the queue's worker thread.
 */
public final class DescriptorChain {
    /** {@link #append} result: the buffer was added. */
    public static final int APPENDED = 0;
    /** {@link #append} result: part of the buffer is not backed by guest memory. */
    public static final int OUTSIDE_MEMORY = 1;
    /** {@link #append} result: a device-readable buffer follows a device-writable one. */
    public static final int READABLE_AFTER_WRITABLE = 2;
    /** {@link #append} result: the chain's total length passes 2^32 bytes. */
    public static final int TOO_LONG = 3;
    /** {@link #append} result: the chain has more buffers than {@link #MAX_BUFFERS}. */
    public static final int TOO_MANY_BUFFERS = 4;

    /** Upper bound on buffers in one chain (a chain of 32768 descriptors each crossing a region edge). */
    public static final int MAX_BUFFERS = 65536;
    private static final long MAX_TOTAL_BYTES = 1L << 32;

    private MemorySegment[] segments = new MemorySegment[16];
    private long[] offsets = new long[16];
    private int[] lengths = new int[16];
    private long[] addresses = new long[16];

    private int token;
    private int head;
    private int descriptorCount;
    private int bufferCount;
    private int readableCount;
    private long readableBytes;
    private long writableBytes;
    /** A writable descriptor was appended, even an empty one: readable ones may no longer follow. */
    private boolean sawWritable;

    /** Starts a new chain; the previous contents are dropped. Engine use. */
    public void reset(int head) {
        this.head = head;
        this.token = head;
        this.descriptorCount = 0;
        this.bufferCount = 0;
        this.readableCount = 0;
        this.readableBytes = 0;
        this.writableBytes = 0;
        this.sawWritable = false;
    }

    /**
     * Appends the buffer {@code [gpa, gpa+length)}; returns {@link #APPENDED} or the reason it was
     * refused. Splits the buffer at region edges. Allocates only while growing to a new maximum chain
     * width. Engine use.
     */
    public int append(GuestMemory memory, long gpa, int length, boolean writable) {
        long len = Integer.toUnsignedLong(length);
        // Order is a property of descriptors, not of bytes: an empty writable descriptor still
        // ends the readable part (virtio 1.x 2.7.4.2), or a readable one could hide behind it.
        if (!writable && sawWritable) {
            return READABLE_AFTER_WRITABLE;
        }
        if (readableBytes + writableBytes + len > MAX_TOTAL_BYTES) {
            return TOO_LONG;
        }
        if (writable) {
            sawWritable = true;
        }
        if (len == 0) {
            return APPENDED; // an empty buffer moves no bytes; its address is never touched
        }
        long at = gpa;
        long remaining = len;
        int added = 0;
        do {
            int r = memory.regionOf(at);
            if (r < 0) {
                bufferCount -= added;
                return OUTSIDE_MEMORY;
            }
            long offset = at - memory.guestPhysicalStart(r);
            long run = Math.min(remaining, memory.regionSize(r) - offset);
            if (bufferCount == MAX_BUFFERS) {
                bufferCount -= added;
                return TOO_MANY_BUFFERS;
            }
            if (bufferCount == segments.length) {
                grow();
            }
            segments[bufferCount] = memory.segment(r);
            offsets[bufferCount] = offset;
            lengths[bufferCount] = (int) run;
            addresses[bufferCount] = at;
            bufferCount++;
            added++;
            at += run;
            remaining -= run;
        } while (remaining > 0);
        if (writable) {
            writableBytes += len;
        } else {
            readableBytes += len;
            readableCount = bufferCount;
        }
        return APPENDED;
    }

    /** Records one more descriptor (ring slot or table entry) walked for this chain. Engine use. */
    public void countDescriptor() {
        descriptorCount++;
    }

    /** Sets the completion token that {@code addUsed(token, len)} takes. Engine use. */
    public void token(int token) {
        this.token = token;
    }

    private void grow() {
        int n = Math.min(segments.length * 2, MAX_BUFFERS);
        segments = Arrays.copyOf(segments, n);
        offsets = Arrays.copyOf(offsets, n);
        lengths = Arrays.copyOf(lengths, n);
        addresses = Arrays.copyOf(addresses, n);
    }

    /** What the queue's {@code addUsed(token, len)} needs to complete this chain later. */
    public int token() {
        return token;
    }

    /** The chain's identity in the ring: the head descriptor index (split) or the buffer id (packed). */
    public int head() {
        return head;
    }

    /** Ring descriptors this chain occupied (an indirect table counts as its one referencing slot). */
    public int descriptorCount() {
        return descriptorCount;
    }

    /** Number of buffers, readable ones first. */
    public int bufferCount() {
        return bufferCount;
    }

    /** Buffers {@code [0, readableCount())} are device-readable. */
    public int readableCount() {
        return readableCount;
    }

    /** Buffers {@code [readableCount(), bufferCount())} are device-writable. */
    public int writableCount() {
        return bufferCount - readableCount;
    }

    /** Total bytes the device may read. */
    public long readableBytes() {
        return readableBytes;
    }

    /** Total bytes the device may write. */
    public long writableBytes() {
        return writableBytes;
    }

    /** True if buffer {@code i} is device-writable. */
    public boolean isWritable(int i) {
        return i >= readableCount;
    }

    /** The mapping (a whole guest region) that holds buffer {@code i}. */
    public MemorySegment segment(int i) {
        checkIndex(i);
        return segments[i];
    }

    /** Offset of buffer {@code i} in {@link #segment(int)}. */
    public long offset(int i) {
        checkIndex(i);
        return offsets[i];
    }

    /** Length in bytes of buffer {@code i}. */
    public int length(int i) {
        checkIndex(i);
        return lengths[i];
    }

    /** Guest-physical address of buffer {@code i}. */
    public long guestAddress(int i) {
        checkIndex(i);
        return addresses[i];
    }

    /** A slice over buffer {@code i}. Allocates; the data path uses segment/offset/length instead. */
    public MemorySegment slice(int i) {
        return segment(i).asSlice(offset(i), length(i));
    }

    private void checkIndex(int i) {
        if (i < 0 || i >= bufferCount) {
            throw new IndexOutOfBoundsException("buffer " + i + " of a chain with " + bufferCount);
        }
    }

    @Override
    public String toString() {
        return "DescriptorChain[head=" + head + ", descriptors=" + descriptorCount + ", buffers=" + bufferCount
                + ", readable=" + readableBytes + "B, writable=" + writableBytes + "B]";
    }
}
