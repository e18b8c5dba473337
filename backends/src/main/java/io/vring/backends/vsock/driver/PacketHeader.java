package io.vring.backends.vsock.driver;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * A virtio-vsock packet header (virtio 1.2 §5.10.6, struct virtio_vsock_hdr) as reusable mutable
 * fields, read from and written to bytes in place, so the driver's data path handles packets without
 * allocating. The offsets are the spec's byte table; the device's own header class is deliberately
 * not shared, so one layout mistake cannot pass on both sides of a test.
 */
public final class PacketHeader {
    /** le64 src_cid, le64 dst_cid. */
    public static final int SRC_CID = 0, DST_CID = 8;
    /** le32 src_port, le32 dst_port. */
    public static final int SRC_PORT = 16, DST_PORT = 20;
    /** le32 len: payload bytes after the header. */
    public static final int LEN = 24;
    /** le16 type, le16 op. */
    public static final int TYPE = 28, OP = 30;
    /** le32 flags (SHUTDOWN bits; SEQPACKET's EOM/EOR on RW). */
    public static final int FLAGS = 32;
    /** le32 buf_alloc, le32 fwd_cnt: the sender's receive window. */
    public static final int BUF_ALLOC = 36, FWD_CNT = 40;

    private static final ValueLayout.OfLong LE64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt LE32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort LE16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private long srcCid;
    private long dstCid;
    private int srcPort;
    private int dstPort;
    private int len;
    private int type;
    private int op;
    private int flags;
    private int bufAlloc;
    private int fwdCnt;

    /** Reads the {@value VsockPacket#HEADER} bytes at {@code offset}. */
    public PacketHeader read(MemorySegment bytes, long offset) {
        srcCid = bytes.get(LE64, offset + SRC_CID);
        dstCid = bytes.get(LE64, offset + DST_CID);
        srcPort = bytes.get(LE32, offset + SRC_PORT);
        dstPort = bytes.get(LE32, offset + DST_PORT);
        len = bytes.get(LE32, offset + LEN);
        type = Short.toUnsignedInt(bytes.get(LE16, offset + TYPE));
        op = Short.toUnsignedInt(bytes.get(LE16, offset + OP));
        flags = bytes.get(LE32, offset + FLAGS);
        bufAlloc = bytes.get(LE32, offset + BUF_ALLOC);
        fwdCnt = bytes.get(LE32, offset + FWD_CNT);
        return this;
    }

    /** Writes the header to the {@value VsockPacket#HEADER} bytes at {@code offset}. */
    public void write(MemorySegment bytes, long offset) {
        bytes.set(LE64, offset + SRC_CID, srcCid);
        bytes.set(LE64, offset + DST_CID, dstCid);
        bytes.set(LE32, offset + SRC_PORT, srcPort);
        bytes.set(LE32, offset + DST_PORT, dstPort);
        bytes.set(LE32, offset + LEN, len);
        bytes.set(LE16, offset + TYPE, (short) type);
        bytes.set(LE16, offset + OP, (short) op);
        bytes.set(LE32, offset + FLAGS, flags);
        bytes.set(LE32, offset + BUF_ALLOC, bufAlloc);
        bytes.set(LE32, offset + FWD_CNT, fwdCnt);
    }

    /** Sets every field but len (which the sender sets from the payload it sends). */
    public PacketHeader set(long srcCid, long dstCid, int srcPort, int dstPort, int type, int op, int flags,
                            int bufAlloc, int fwdCnt) {
        this.srcCid = srcCid;
        this.dstCid = dstCid;
        this.srcPort = srcPort;
        this.dstPort = dstPort;
        this.type = type;
        this.op = op;
        this.flags = flags;
        this.bufAlloc = bufAlloc;
        this.fwdCnt = fwdCnt;
        return this;
    }

    public PacketHeader len(int len) {
        this.len = len;
        return this;
    }

    public long srcCid() {
        return srcCid;
    }

    public long dstCid() {
        return dstCid;
    }

    public int srcPort() {
        return srcPort;
    }

    public int dstPort() {
        return dstPort;
    }

    public int len() {
        return len;
    }

    public int type() {
        return type;
    }

    public int op() {
        return op;
    }

    public int flags() {
        return flags;
    }

    public int bufAlloc() {
        return bufAlloc;
    }

    public int fwdCnt() {
        return fwdCnt;
    }

    @Override
    public String toString() {
        return VsockPacket.opName(op) + " type " + type + " " + srcCid + ":" + Integer.toUnsignedString(srcPort)
                + " -> " + dstCid + ":" + Integer.toUnsignedString(dstPort) + " len " + Integer.toUnsignedString(len)
                + " flags " + flags + " buf_alloc " + bufAlloc + " fwd_cnt " + fwdCnt;
    }
}
