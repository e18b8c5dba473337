package io.vring.protocol.message;

import java.nio.ByteBuffer;

/**
 * Index u32, num u32: SET_VRING_NUM (queue size), SET/GET_VRING_BASE (split: next avail index in bits
 * 0-15; packed: avail index 0-14, avail wrap 15, used index 16-30, used wrap 31), SET_VRING_ENABLE
 * (1/0), SET_VRING_ENDIAN (0 LE / 1 BE), VRING_KICK and the in-band BACKEND_VRING_CALL/ERR (num 0).
 * Both fields are unsigned on the wire.
 */
public record VringState(int index, int num) implements Payload {
    public static final int SIZE = 8;
    /** Offset of the ring index. */
    public static final int INDEX = 0;
    /** Offset of the value. */
    public static final int NUM = 4;

    @Override
    public int encodedSize() {
        return SIZE;
    }

    @Override
    public void encode(ByteBuffer dst) {
        PayloadView.reserve(dst, SIZE).putInt(INDEX, index).putInt(NUM, num);
    }

    public static VringState decode(ByteBuffer src) {
        ByteBuffer b = PayloadView.exactly(src, SIZE, "vring state");
        return new VringState(b.getInt(INDEX), b.getInt(NUM));
    }

    /** The index as an unsigned value. */
    public long indexUnsigned() {
        return Integer.toUnsignedLong(index);
    }

    /** The value as an unsigned value. */
    public long numUnsigned() {
        return Integer.toUnsignedLong(num);
    }
}
