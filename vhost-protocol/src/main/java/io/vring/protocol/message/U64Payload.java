package io.vring.protocol.message;

import java.nio.ByteBuffer;

/**
 * A single u64: virtio features, protocol features, GET_QUEUE_NUM, GET_MAX_MEM_SLOTS, status, MTU,
 * and the REPLY_ACK ack (0 = success, anything else = failure).
 */
public record U64Payload(long value) implements Payload {
    public static final int SIZE = 8;
    /** The ack value for success. */
    public static final long ACK_OK = 0;
    /** The ack value a back-end sends for a failed request (crosvm's front-end sends -errno instead). */
    public static final long ACK_FAILED = 1;

    @Override
    public int encodedSize() {
        return SIZE;
    }

    @Override
    public void encode(ByteBuffer dst) {
        PayloadView.reserve(dst, SIZE).putLong(0, value);
    }

    public static U64Payload decode(ByteBuffer src) {
        return new U64Payload(PayloadView.exactly(src, SIZE, "u64 payload").getLong(0));
    }

    @Override
    public String toString() {
        return "U64Payload[0x" + Long.toHexString(value) + "]";
    }
}
