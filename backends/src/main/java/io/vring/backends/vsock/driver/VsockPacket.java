package io.vring.backends.vsock.driver;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * One whole virtio-vsock packet as a value: the header's fields and a payload copy. The driver's data
 * path does not use it (it reads and writes headers in place with {@link PacketHeader}); it is for
 * what is not on the hot path: packets handed to a {@link PacketHandler} that wants to keep them, and
 * packets built by hand to probe a device ({@link PacketRings#sendRaw}).
 *
 * <p>The constants are the spec's (virtio 1.2 §5.10.6): the header is {@value #HEADER} bytes,
 * little-endian; ops, socket types and SHUTDOWN flags are the numbers on the wire.
 */
public record VsockPacket(long srcCid, long dstCid, int srcPort, int dstPort, int type, int op, int flags,
                          int bufAlloc, int fwdCnt, byte[] payload) {
    /** Bytes of the packet header (struct virtio_vsock_hdr). */
    public static final int HEADER = 44;
    /** The host's CID: where a guest's connect(2, port) goes. */
    public static final long HOST_CID = 2;

    /** Ops (le16 at offset 30). */
    public static final int REQUEST = 1, RESPONSE = 2, RST = 3, SHUTDOWN = 4, RW = 5, CREDIT_UPDATE = 6,
            CREDIT_REQUEST = 7;
    /** Socket types (le16 at offset 28): STREAM always, SEQPACKET with VIRTIO_VSOCK_F_SEQPACKET. */
    public static final int STREAM = 1, SEQPACKET = 2;
    /** SHUTDOWN flags: the sender will receive no more / send no more. */
    public static final int SHUTDOWN_RCV = 1, SHUTDOWN_SEND = 2;
    /** RW flags of a SEQPACKET connection: the message ends here (EOM), and the record too (EOR, MSG_EOR). */
    public static final int EOM = 1, EOR = 2;

    /** Header bytes with {@code len} as given (which may lie about the payload) followed by the payload. */
    public byte[] encode(int len) {
        ByteBuffer b = ByteBuffer.allocate(HEADER + payload.length).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(PacketHeader.SRC_CID, srcCid).putLong(PacketHeader.DST_CID, dstCid)
                .putInt(PacketHeader.SRC_PORT, srcPort).putInt(PacketHeader.DST_PORT, dstPort)
                .putInt(PacketHeader.LEN, len).putShort(PacketHeader.TYPE, (short) type)
                .putShort(PacketHeader.OP, (short) op).putInt(PacketHeader.FLAGS, flags)
                .putInt(PacketHeader.BUF_ALLOC, bufAlloc).putInt(PacketHeader.FWD_CNT, fwdCnt);
        b.put(HEADER, payload);
        return b.array();
    }

    /** Header and payload, the header's len the payload's length. */
    public byte[] encode() {
        return encode(payload.length);
    }

    /** A copy of the packet {@code header} describes, its payload at {@code buffer[offset..offset+length)}. */
    public static VsockPacket of(PacketHeader header, byte[] buffer, int offset, int length) {
        byte[] payload = new byte[length];
        System.arraycopy(buffer, offset, payload, 0, length);
        return new VsockPacket(header.srcCid(), header.dstCid(), header.srcPort(), header.dstPort(), header.type(),
                header.op(), header.flags(), header.bufAlloc(), header.fwdCnt(), payload);
    }

    /** The op's name in the spec, or its number. */
    public static String opName(int op) {
        return switch (op) {
            case REQUEST -> "REQUEST";
            case RESPONSE -> "RESPONSE";
            case RST -> "RST";
            case SHUTDOWN -> "SHUTDOWN";
            case RW -> "RW";
            case CREDIT_UPDATE -> "CREDIT_UPDATE";
            case CREDIT_REQUEST -> "CREDIT_REQUEST";
            default -> "op " + op;
        };
    }

    @Override
    public String toString() {
        return "VsockPacket[" + opName(op) + " type " + type + " " + srcCid + ":" + Integer.toUnsignedString(srcPort)
                + " -> " + dstCid + ":" + Integer.toUnsignedString(dstPort) + " len " + payload.length + " flags "
                + flags + " buf_alloc " + bufAlloc + " fwd_cnt " + fwdCnt + "]";
    }
}
