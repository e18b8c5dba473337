package io.vring.protocol.message;

import io.vring.protocol.VhostUserError;
import io.vring.protocol.VhostUserException;

import java.nio.ByteBuffer;

/**
 * The u64 of SET_VRING_KICK/CALL/ERR: ring index in bits 0-7, bit 8 (NOFD) set when no fd comes with
 * the message (for KICK: "poll the ring, there is no eventfd"), every other bit zero. With NOFD clear
 * exactly one fd must come with the message, with it set none.
 */
public record VringFdPayload(int index, boolean noFd) implements Payload {
    public static final int SIZE = 8;
    /** Bits that hold the ring index. */
    public static final long INDEX_MASK = 0xFF;
    /** Set when no fd comes with the message. */
    public static final long NOFD = 0x100;
    /** The most rings these messages can address. */
    public static final int MAX_INDEX = 0xFF;

    public VringFdPayload {
        if (index < 0 || index > MAX_INDEX) {
            throw new IllegalArgumentException("ring index " + index + " does not fit in 8 bits");
        }
    }

    /** The u64 on the wire. */
    public long toU64() {
        return index | (noFd ? NOFD : 0);
    }

    /** The number of fds that must come with this payload. */
    public int expectedFds() {
        return noFd ? 0 : 1;
    }

    /**
     * Throws IncorrectFds unless {@code fdCount} matches the NOFD bit.
     *
     * @param request the request name for the message, e.g. {@code "SET_VRING_KICK"}
     */
    public void checkFds(String request, int fdCount) {
        if (fdCount != expectedFds()) {
            throw new VhostUserException(VhostUserError.IncorrectFds, request + " for ring " + index
                    + (noFd ? " with NOFD" : "") + " expects " + expectedFds() + " fd, got " + fdCount);
        }
    }

    /** Reads the u64 form; bits other than the index and NOFD are an error. */
    public static VringFdPayload fromU64(long value) {
        if ((value & ~(INDEX_MASK | NOFD)) != 0) {
            throw new VhostUserException(VhostUserError.InvalidParam,
                    "vring fd payload 0x" + Long.toHexString(value) + " has bits set outside index and NOFD");
        }
        return new VringFdPayload((int) (value & INDEX_MASK), (value & NOFD) != 0);
    }

    @Override
    public int encodedSize() {
        return SIZE;
    }

    @Override
    public void encode(ByteBuffer dst) {
        PayloadView.reserve(dst, SIZE).putLong(0, toU64());
    }

    public static VringFdPayload decode(ByteBuffer src) {
        return fromU64(PayloadView.exactly(src, SIZE, "vring fd payload").getLong(0));
    }
}
