package io.vring.protocol.message;

import java.nio.ByteBuffer;

/**
 * A message payload that knows its wire form. Every implementation also has a static
 * {@code decode(ByteBuffer)} that reads the buffer's remaining bytes, checks their length strictly
 * and does not move the buffer's position. All fields are little-endian (the spec says host order;
 * vring runs on x86_64 and arm64 only).
 */
public interface Payload {
    /** Bytes on the wire. */
    int encodedSize();

    /** Writes {@link #encodedSize()} bytes at {@code dst}'s position and advances it. */
    void encode(ByteBuffer dst);

    /** The wire form in a new little-endian buffer, ready to read or send. */
    default ByteBuffer encode() {
        ByteBuffer b = PayloadView.allocate(encodedSize());
        encode(b);
        return b.flip();
    }
}
