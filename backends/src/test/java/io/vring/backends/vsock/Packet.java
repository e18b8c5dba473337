package io.vring.backends.vsock;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * A vsock packet as the test's guest sees it, encoded and decoded here from the spec's byte table
 * (virtio 1.2 §5.10.6) and not with the device's {@link VsockHeader}, so one layout mistake cannot
 * pass on both sides.
 */
record Packet(long srcCid, long dstCid, int srcPort, int dstPort, int type, int op, int flags, int bufAlloc,
              int fwdCnt, byte[] payload) {
    static final int HEADER = 44;
    static final int REQUEST = 1, RESPONSE = 2, RST = 3, SHUTDOWN = 4, RW = 5, CREDIT_UPDATE = 6, CREDIT_REQUEST = 7;
    static final int STREAM = 1;
    static final int SHUTDOWN_RCV = 1, SHUTDOWN_SEND = 2;

    /** Header bytes with {@code len} as given (which may lie) followed by the payload. */
    byte[] encode(int len) {
        ByteBuffer b = ByteBuffer.allocate(HEADER + payload.length).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(0, srcCid).putLong(8, dstCid).putInt(16, srcPort).putInt(20, dstPort).putInt(24, len)
                .putShort(28, (short) type).putShort(30, (short) op).putInt(32, flags).putInt(36, bufAlloc)
                .putInt(40, fwdCnt);
        b.put(HEADER, payload);
        return b.array();
    }

    byte[] encode() {
        return encode(payload.length);
    }

    static Packet decode(byte[] bytes, int usedLength) {
        if (usedLength < HEADER) {
            throw new AssertionError("rx used length " + usedLength + " is shorter than a header");
        }
        ByteBuffer b = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        int len = b.getInt(24);
        if (HEADER + len != usedLength) {
            throw new AssertionError("rx used length " + usedLength + " but header len " + len);
        }
        byte[] payload = new byte[len];
        b.get(HEADER, payload);
        return new Packet(b.getLong(0), b.getLong(8), b.getInt(16), b.getInt(20), b.getShort(28) & 0xFFFF,
                b.getShort(30) & 0xFFFF, b.getInt(32), b.getInt(36), b.getInt(40), payload);
    }

    @Override
    public String toString() {
        return "Packet[op " + op + " type " + type + " " + srcCid + ":" + Integer.toUnsignedString(srcPort) + " -> "
                + dstCid + ":" + Integer.toUnsignedString(dstPort) + " len " + payload.length + " flags " + flags
                + " buf_alloc " + bufAlloc + " fwd_cnt " + fwdCnt + "]";
    }
}
