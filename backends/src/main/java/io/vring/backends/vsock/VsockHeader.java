package io.vring.backends.vsock;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * The 44-byte {@code virtio_vsock_hdr} (virtio 1.2 §5.10.6, all fields little-endian) as named
 * offsets, and one reusable header buffer with accessors. Ports, {@code len}, {@code buf_alloc} and
 * {@code fwd_cnt} are u32 on the wire and held in Java ints read as unsigned where it matters.
 */
public final class VsockHeader {
    /** Bytes of the header; the payload starts at this chain offset whatever the descriptor split. */
    public static final int SIZE = 44;
    /** le64 src_cid, le64 dst_cid, le32 src_port, le32 dst_port, le32 len. */
    public static final int SRC_CID = 0, DST_CID = 8, SRC_PORT = 16, DST_PORT = 20, LEN = 24;
    /** le16 type, le16 op, le32 flags, le32 buf_alloc, le32 fwd_cnt. */
    public static final int TYPE = 28, OP = 30, FLAGS = 32, BUF_ALLOC = 36, FWD_CNT = 40;

    public static final int TYPE_STREAM = 1;
    public static final int TYPE_SEQPACKET = 2;

    public static final int OP_INVALID = 0;
    public static final int OP_REQUEST = 1;
    public static final int OP_RESPONSE = 2;
    public static final int OP_RST = 3;
    public static final int OP_SHUTDOWN = 4;
    public static final int OP_RW = 5;
    public static final int OP_CREDIT_UPDATE = 6;
    public static final int OP_CREDIT_REQUEST = 7;

    /** SHUTDOWN flag masks (Linux uapi values; the spec's listing gives bit numbers 0 and 1). */
    public static final int SHUTDOWN_RCV = 1, SHUTDOWN_SEND = 2;
    /** RW flags on a SEQPACKET socket: end of message, end of record. */
    public static final int SEQ_EOM = 1, SEQ_EOR = 2;

    /** The well-known host CID: every packet the device sends comes from it. */
    public static final long HOST_CID = 2;
    /** Largest payload one packet carries (Linux VIRTIO_VSOCK_MAX_PKT_BUF_SIZE). */
    public static final int MAX_PAYLOAD = 64 * 1024;

    private static final ValueLayout.OfLong LE64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt LE32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort LE16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final MemorySegment bytes = MemorySegment.ofArray(new byte[SIZE]);

    /** The 44 header bytes, for copying in and out of a chain. */
    public MemorySegment bytes() {
        return bytes;
    }

    public long srcCid() { return bytes.get(LE64, SRC_CID); }
    public long dstCid() { return bytes.get(LE64, DST_CID); }
    public int srcPort() { return bytes.get(LE32, SRC_PORT); }
    public int dstPort() { return bytes.get(LE32, DST_PORT); }
    public int len() { return bytes.get(LE32, LEN); }
    public int type() { return Short.toUnsignedInt(bytes.get(LE16, TYPE)); }
    public int op() { return Short.toUnsignedInt(bytes.get(LE16, OP)); }
    public int flags() { return bytes.get(LE32, FLAGS); }
    public int bufAlloc() { return bytes.get(LE32, BUF_ALLOC); }
    public int fwdCnt() { return bytes.get(LE32, FWD_CNT); }

    /** Fills every field; the device's packets always come from the host CID. */
    public VsockHeader set(long dstCid, int srcPort, int dstPort, int len, int type, int op, int flags,
                           int bufAlloc, int fwdCnt) {
        bytes.set(LE64, SRC_CID, HOST_CID);
        bytes.set(LE64, DST_CID, dstCid);
        bytes.set(LE32, SRC_PORT, srcPort);
        bytes.set(LE32, DST_PORT, dstPort);
        bytes.set(LE32, LEN, len);
        bytes.set(LE16, TYPE, (short) type);
        bytes.set(LE16, OP, (short) op);
        bytes.set(LE32, FLAGS, flags);
        bytes.set(LE32, BUF_ALLOC, bufAlloc);
        bytes.set(LE32, FWD_CNT, fwdCnt);
        return this;
    }

    /** Replaces the source CID: a packet the device writes on behalf of another guest. */
    public VsockHeader fromCid(long srcCid) {
        bytes.set(LE64, SRC_CID, srcCid);
        return this;
    }

    /** The op's name for log lines. */
    public static String opName(int op) {
        return switch (op) {
            case OP_INVALID -> "INVALID";
            case OP_REQUEST -> "REQUEST";
            case OP_RESPONSE -> "RESPONSE";
            case OP_RST -> "RST";
            case OP_SHUTDOWN -> "SHUTDOWN";
            case OP_RW -> "RW";
            case OP_CREDIT_UPDATE -> "CREDIT_UPDATE";
            case OP_CREDIT_REQUEST -> "CREDIT_REQUEST";
            default -> "op " + op;
        };
    }

    /** One line naming the packet, for logs. */
    public String describe() {
        return opName(op()) + " type " + type() + " " + srcCid() + ":" + Integer.toUnsignedString(srcPort())
                + " -> " + dstCid() + ":" + Integer.toUnsignedString(dstPort()) + " len " + Integer.toUnsignedString(len());
    }
}
