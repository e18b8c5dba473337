package io.vring.protocol.message;

import io.vring.protocol.VhostUserError;
import io.vring.protocol.VhostUserException;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * A little-endian view of the remaining bytes of a payload buffer, handed out only after the length is
 * checked. Decoders read the view with absolute offsets; the source buffer's position is not moved.
 */
final class PayloadView {
    /** The remaining bytes of {@code src}, which must be exactly {@code size} long. */
    static ByteBuffer exactly(ByteBuffer src, int size, String what) {
        if (src.remaining() != size) {
            throw new VhostUserException(VhostUserError.InvalidMessage,
                    what + " must be " + size + " bytes, got " + src.remaining());
        }
        return src.slice().order(ByteOrder.LITTLE_ENDIAN);
    }

    /** The remaining bytes of {@code src}, whose length {@code rule} must accept. */
    static ByteBuffer checked(ByteBuffer src, SizeRule rule, String what) {
        rule.check(what, src.remaining());
        return src.slice().order(ByteOrder.LITTLE_ENDIAN);
    }

    /** A little-endian window of {@code size} bytes at {@code dst}'s position, which is advanced past it. */
    static ByteBuffer reserve(ByteBuffer dst, int size) {
        if (dst.remaining() < size) {
            throw new IllegalArgumentException("need " + size + " bytes to encode, buffer has " + dst.remaining());
        }
        ByteBuffer b = dst.slice(dst.position(), size).order(ByteOrder.LITTLE_ENDIAN);
        dst.position(dst.position() + size);
        return b;
    }

    /** A new little-endian buffer of {@code size} bytes. */
    static ByteBuffer allocate(int size) {
        return ByteBuffer.allocate(size).order(ByteOrder.LITTLE_ENDIAN);
    }

    /** Throws InvalidParam unless {@code value} fits in an unsigned 16-bit field. */
    static int u16(String field, int value) {
        if ((value & ~0xFFFF) != 0) {
            throw new VhostUserException(VhostUserError.InvalidParam, field + " " + value + " does not fit in u16");
        }
        return value;
    }

    private PayloadView() {
    }
}
