package io.vring.backends.vsock;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;

/**
 * Guest-to-host bytes the host socket did not take yet: a ring of the connection's advertised
 * {@code buf_alloc}, so a guest that honours its credit can never overflow it. Allocated once per
 * connection, the first time a write comes up short; steady state allocates nothing.
 */
final class TxBacklog {
    private final int capacity;
    private final ByteBuffer ring;
    private final MemorySegment ringSegment;
    /** Two views of the ring for a gathering write of the wrapped part and the rest. */
    private final ByteBuffer[] views;
    private int head;
    private int size;

    TxBacklog(int capacity) {
        this.capacity = capacity;
        this.ring = ByteBuffer.allocateDirect(capacity);
        this.ringSegment = MemorySegment.ofBuffer(ring);
        this.views = new ByteBuffer[] {ring.duplicate(), ring.duplicate()};
    }

    int size() {
        return size;
    }

    int free() {
        return capacity - size;
    }

    boolean isEmpty() {
        return size == 0;
    }

    /** Appends {@code length} bytes of {@code src} from {@code offset}; the caller checked {@link #free()}. */
    void append(MemorySegment src, long offset, int length) {
        int tail = (head + size) % capacity;
        int first = Math.min(length, capacity - tail);
        MemorySegment.copy(src, offset, ringSegment, tail, first);
        if (first < length) {
            MemorySegment.copy(src, offset + first, ringSegment, 0, length - first);
        }
        size += length;
    }

    /** Writes as much as the socket takes; returns the count written (0 when it would block). */
    int flush(SocketChannel channel) throws IOException {
        if (size == 0) {
            return 0;
        }
        int first = Math.min(size, capacity - head);
        views[0].limit(head + first).position(head);
        views[1].limit(size - first).position(0);
        long written = channel.write(views, 0, first < size ? 2 : 1);
        head = (int) ((head + written) % capacity);
        size -= (int) written;
        if (size == 0) {
            head = 0;
        }
        return (int) written;
    }
}
