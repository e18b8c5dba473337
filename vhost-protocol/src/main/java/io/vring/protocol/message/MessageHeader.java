package io.vring.protocol.message;

import io.vring.protocol.VhostUserError;
import io.vring.protocol.VhostUserException;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The 12-byte header in front of every vhost-user message: request u32, flags u32, size u32 (payload
 * bytes, header excluded), little-endian, no padding before the payload.
 *
 * <p>Flags: bits 0-1 the version (always 1), bit 2 REPLY, bit 3 NEED_REPLY, bits 4-31 reserved zero.
 * A request has flags {@code 0x1} or {@code 0x9}; a reply has exactly {@code 0x5} (QEMU rejects any other
 * reply flags with EPROTO, so a reply never echoes NEED_REPLY).
 *
 * @param request the request code (front-end and back-end codes are separate spaces)
 * @param flags   the flag word as on the wire
 * @param size    the payload length, unsigned; {@link #decode} rejects more than {@link #MAX_PAYLOAD}
 */
public record MessageHeader(int request, int flags, int size) {
    /** Bytes on the wire. */
    public static final int SIZE = 12;
    /** Offset of the request code. */
    public static final int REQUEST = 0;
    /** Offset of the flags. */
    public static final int FLAGS = 4;
    /** Offset of the payload size. */
    public static final int PAYLOAD_SIZE = 8;

    /** The only version there is, in flag bits 0-1. */
    public static final int VERSION = 0x1;
    /** Flag bits that hold the version. */
    public static final int VERSION_MASK = 0x3;
    /** Set on every reply. */
    public static final int REPLY = 0x4;
    /** The sender wants a REPLY_ACK ack. */
    public static final int NEED_REPLY = 0x8;
    /** Bits 4-31: must be zero (rust-vmm and crosvm reject the header otherwise). */
    public static final int RESERVED_MASK = ~(VERSION_MASK | REPLY | NEED_REPLY);
    /** The largest payload accepted (rust-vmm's MAX_MSG_SIZE; a shmem config reply needs 2056). */
    public static final int MAX_PAYLOAD = 4096;

    /** A request header: flags {@code 0x1}, or {@code 0x9} with {@code needReply}. */
    public static MessageHeader request(int request, int size, boolean needReply) {
        return new MessageHeader(request, VERSION | (needReply ? NEED_REPLY : 0), size);
    }

    /** A reply header: flags exactly {@code 0x5}. */
    public static MessageHeader reply(int request, int size) {
        return new MessageHeader(request, VERSION | REPLY, size);
    }

    /** The version bits of the flags. */
    public int version() {
        return flags & VERSION_MASK;
    }

    /** True if the REPLY bit is set. */
    public boolean isReply() {
        return (flags & REPLY) != 0;
    }

    /** True if the sender asked for an ack (NEED_REPLY). */
    public boolean needsReply() {
        return (flags & NEED_REPLY) != 0;
    }

    /** The payload size as an unsigned value. */
    public long sizeUnsigned() {
        return Integer.toUnsignedLong(size);
    }

    /** True if this is a reply to {@code type}: same code and flags exactly {@code 0x5}. */
    public boolean isReplyTo(RequestType type) {
        return request == type.code() && flags == (VERSION | REPLY);
    }

    /** Writes the 12 bytes at {@code dst}'s position and advances it. */
    public void encode(ByteBuffer dst) {
        ByteBuffer b = dst.slice().order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(REQUEST, request).putInt(FLAGS, flags).putInt(PAYLOAD_SIZE, size);
        dst.position(dst.position() + SIZE);
    }

    /** These 12 bytes in a new little-endian buffer, ready to read. */
    public ByteBuffer encode() {
        ByteBuffer b = ByteBuffer.allocate(SIZE).order(ByteOrder.LITTLE_ENDIAN);
        encode(b);
        return b.flip();
    }

    /**
     * Reads a header from exactly 12 bytes and checks it: version 1, reserved bits zero, payload no
     * larger than {@link #MAX_PAYLOAD}. The request code is not checked here: the channel decides
     * which code space it belongs to.
     *
     * @throws VhostUserException InvalidMessage for a wrong length, version or reserved bit;
     *                            OversizedMsg for a payload over the limit
     */
    public static MessageHeader decode(ByteBuffer src) {
        ByteBuffer b = PayloadView.exactly(src, SIZE, "message header");
        MessageHeader h = new MessageHeader(b.getInt(REQUEST), b.getInt(FLAGS), b.getInt(PAYLOAD_SIZE));
        h.validate();
        return h;
    }

    /** The checks {@link #decode} makes, for a header built some other way. */
    public void validate() {
        if (version() != VERSION) {
            throw new VhostUserException(VhostUserError.InvalidMessage,
                    "request " + request + " has version " + version() + " in flags 0x" + Integer.toHexString(flags)
                            + ", expected 1");
        }
        if ((flags & RESERVED_MASK) != 0) {
            throw new VhostUserException(VhostUserError.InvalidMessage,
                    "request " + request + " has reserved flag bits set: 0x" + Integer.toHexString(flags));
        }
        if (sizeUnsigned() > MAX_PAYLOAD) {
            throw new VhostUserException(VhostUserError.OversizedMsg,
                    "request " + request + " announces a " + sizeUnsigned() + "-byte payload, limit " + MAX_PAYLOAD);
        }
    }

    @Override
    public String toString() {
        return "MessageHeader[request=" + request + ", flags=0x" + Integer.toHexString(flags) + ", size="
                + sizeUnsigned() + "]";
    }
}
