package io.vring.backends.vsock;

import io.vring.engine.chain.ChainReader;
import io.vring.engine.chain.ChainWriter;
import io.vring.protocol.RingHandle;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

import static io.vring.backends.vsock.VsockHeader.*;

/**
 * Packets other VMs' guests sent to this VM's guest, waiting for its rx buffers: whole
 * virtio-vsock packets, header and payload as their sender wrote them, in one ring of bytes
 * (records of {@code le32 payload length, 44-byte header, payload}). The device does not keep
 * connection state for them: the two guests run the stream between themselves, credit included,
 * so a well-behaved sender never has more in here than the receiver's window.
 *
 * <p>A payload longer than the rx buffer it meets goes in pieces, each with the sender's header and
 * its own {@code len} (Linux posts 4 KiB rx buffers; a sender's packet holds up to 64 KiB); on a
 * SEQPACKET packet only the last piece keeps EOM and EOR. A full inbox refuses the packet and
 * remembers the sender's tx ring, which is woken once half the ring is free: the sender keeps the
 * chain and tries again, so nothing is dropped and a flooding guest only stalls itself.
 *
 * <p>Its lock is a leaf: taken under a connection table's lock, never the other way round.
 * Allocation-free once built.
 */
final class SiblingInbox {
    /** Bytes the ring holds: sixteen packets of the largest payload. */
    static final int CAPACITY = 16 * (4 + SIZE + MAX_PAYLOAD);
    private static final int RECORD_HEADER = 4;
    private static final ValueLayout.OfInt LE32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final Object lock = new Object();
    private final MemorySegment ring = MemorySegment.ofBuffer(ByteBuffer.allocateDirect(CAPACITY));
    private final MemorySegment scratch = MemorySegment.ofArray(new byte[RECORD_HEADER]);
    private final VsockHeader piece = new VsockHeader();
    private final List<RingHandle> waiting = new ArrayList<>(8);
    private int head;
    private int size;
    /** Payload bytes of the head packet already handed to the guest in earlier pieces. */
    private int headDone;

    /** Whether any packet waits; a racy read is fine (the rx worker is woken after every offer). */
    boolean isEmpty() {
        synchronized (lock) {
            return size == 0;
        }
    }

    /**
     * Queues the packet whose header is {@code header} and whose {@code len} payload bytes are next
     * in {@code payload} (null when {@code len} is 0). Returns false, and remembers {@code sender}
     * (may be null) to wake, when there is no room now.
     */
    boolean offer(VsockHeader header, ChainReader payload, int len, RingHandle sender) {
        int need = RECORD_HEADER + SIZE + len;
        synchronized (lock) {
            if (CAPACITY - size < need) {
                if (sender != null && !waiting.contains(sender)) {
                    waiting.add(sender);
                }
                return false;
            }
            int at = (head + size) % CAPACITY;
            scratch.set(LE32, 0, len);
            at = put(scratch, RECORD_HEADER, at);
            at = put(header.bytes(), SIZE, at);
            if (len > 0) {
                int first = Math.min(len, CAPACITY - at);
                payload.read(ring, at, first);
                if (first < len) {
                    payload.read(ring, 0, len - first);
                }
            }
            size += need;
            return true;
        }
    }

    /**
     * Writes the next packet, or the next piece of it, into the chain {@code writer} is on. Returns
     * the bytes written (a header and its payload), or 0 if nothing waits or the chain cannot hold
     * a header and a byte of a packet that has payload.
     */
    int take(ChainWriter writer) {
        synchronized (lock) {
            if (size == 0) {
                return 0;
            }
            int at = get(head, scratch, RECORD_HEADER);
            int len = scratch.get(LE32, 0);
            int payloadAt = get(at, piece.bytes(), SIZE);
            int remaining = len - headDone;
            long room = writer.remaining() - SIZE;
            if (room < 0 || (remaining > 0 && room == 0)) {
                return 0;
            }
            int n = (int) Math.min(room, remaining);
            piece.bytes().set(LE32, LEN, n);
            if (n < remaining && piece.type() == TYPE_SEQPACKET) {
                piece.bytes().set(LE32, FLAGS, piece.flags() & ~(SEQ_EOM | SEQ_EOR));
            }
            writer.write(piece.bytes(), 0, SIZE);
            if (n > 0) {
                int from = (payloadAt + headDone) % CAPACITY;
                int first = Math.min(n, CAPACITY - from);
                writer.write(ring, from, first);
                if (first < n) {
                    writer.write(ring, 0, n - first);
                }
            }
            headDone += n;
            if (headDone == len) {
                int record = RECORD_HEADER + SIZE + len;
                head = (head + record) % CAPACITY;
                size -= record;
                headDone = 0;
                if (size == 0) {
                    head = 0;
                }
                wakeSendersIfRoom();
            }
            return SIZE + n;
        }
    }

    /** Forgets every packet (the guest that would read them is gone) and wakes the senders. */
    void clear() {
        synchronized (lock) {
            head = 0;
            size = 0;
            headDone = 0;
            wakeSenders();
        }
    }

    private void wakeSendersIfRoom() {
        if (size <= CAPACITY / 2) {
            wakeSenders();
        }
    }

    /** Wakes every sender that found the inbox full; each retries its packet. Under the lock. */
    private void wakeSenders() {
        for (int i = 0; i < waiting.size(); i++) {
            waiting.get(i).wakeUp();
        }
        waiting.clear();
    }

    /** Copies {@code length} bytes of {@code src} into the ring at {@code at}; returns the position after. */
    private int put(MemorySegment src, int length, int at) {
        int first = Math.min(length, CAPACITY - at);
        MemorySegment.copy(src, 0, ring, at, first);
        if (first < length) {
            MemorySegment.copy(src, first, ring, 0, length - first);
        }
        return (at + length) % CAPACITY;
    }

    /** Copies {@code length} ring bytes from {@code at} into {@code dst}; returns the position after. */
    private int get(int at, MemorySegment dst, int length) {
        int first = Math.min(length, CAPACITY - at);
        MemorySegment.copy(ring, at, dst, 0, first);
        if (first < length) {
            MemorySegment.copy(ring, 0, dst, first, length - first);
        }
        return (at + length) % CAPACITY;
    }
}
