package io.vring.backends.vsock;

import io.vring.engine.os.Libc;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;

/**
 * Guest-to-host bytes of a SEQPACKET connection not yet on the host socket: complete messages
 * waiting for the socket to take them, each sent later as ONE record, and the message the guest is
 * still sending (its RW packets so far, no EOM yet). Together they never exceed the connection's
 * {@code buf_alloc}, as the guest's credit counts every byte until it reaches the host socket.
 *
 * <p>The bytes lie in one linear buffer of {@code buf_alloc} bytes, so every record is contiguous
 * and goes out with one send; when a message would run past the end, what is held moves to the front
 * (rare: only while the host is slower than the guest). Message lengths sit in a ring that starts
 * small and doubles up to {@code buf_alloc} entries (one per byte is the most a guest within its
 * credit can queue: empty messages are not kept), so a busy connection's steady state allocates
 * nothing. Allocated once per connection, the first time a message cannot go straight out.
 */
final class SeqpacketBacklog {
    private final int capacity;
    private final MemorySegment bytes;
    private int head;
    private int tail;
    /** Lengths of the complete messages, oldest first, in a ring. */
    private int[] lengths = new int[16];
    private int first;
    private int messages;
    private int completeBytes;

    SeqpacketBacklog(int capacity) {
        this.capacity = capacity;
        this.bytes = MemorySegment.ofBuffer(ByteBuffer.allocateDirect(capacity));
    }

    /** Bytes held: complete messages and the one being assembled. */
    int size() {
        return tail - head;
    }

    /** Bytes of the message the guest has not ended yet. */
    int assembling() {
        return size() - completeBytes;
    }

    int messages() {
        return messages;
    }

    /** Appends to the message being assembled; the caller checked {@code size() + length <= capacity}. */
    void append(MemorySegment src, long offset, int length) {
        if (tail + length > capacity) {
            MemorySegment.copy(bytes, head, bytes, 0, size());
            tail -= head;
            head = 0;
        }
        MemorySegment.copy(src, offset, bytes, tail, length);
        tail += length;
    }

    /** The message being assembled is complete (its EOM came); a message of no bytes is not kept. */
    void endMessage() {
        int length = assembling();
        if (length == 0) {
            return;
        }
        if (messages == lengths.length) {
            grow();
        }
        lengths[(first + messages) % lengths.length] = length;
        messages++;
        completeBytes += length;
    }

    /** Forgets the message being assembled (the guest will never end it). */
    void dropAssembling() {
        tail = head + completeBytes;
        if (tail == head) {
            head = tail = 0;
        }
    }

    /**
     * Sends complete messages, oldest first, one record each, until the socket cannot take the next.
     * Returns the bytes sent.
     *
     * @throws io.vring.engine.os.NativeCallException if the socket fails (peer gone, a record larger than it can ever take)
     */
    int flush(int fd) {
        int sent = 0;
        while (messages > 0) {
            int length = lengths[first];
            if (Libc.send(fd, bytes, head, length, Libc.MSG_DONTWAIT) < 0) {
                break;
            }
            head += length;
            completeBytes -= length;
            first = (first + 1) % lengths.length;
            messages--;
            sent += length;
        }
        if (head == tail) {
            head = tail = 0;
        }
        return sent;
    }

    private void grow() {
        int[] larger = new int[Math.min(Math.max(capacity, 16), lengths.length * 2)];
        if (larger.length == lengths.length) {
            throw new IllegalStateException("more than " + capacity + " messages in " + capacity + " bytes");
        }
        for (int i = 0; i < messages; i++) {
            larger[i] = lengths[(first + i) % lengths.length];
        }
        lengths = larger;
        first = 0;
    }
}
