package io.vring.backends.vsock.driver;

import io.vring.engine.DriverQueue;

import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The packet layer of the driver: fixed slots in the tx queue's data area for outgoing packets,
 * receive buffers posted on the rx queue, and the copy of each packet into and out of guest memory
 * cut as the {@link ChainLayout}s say. Nothing here allocates once built.
 *
 * <p>Pieces of one chain lie {@value #GAP} bytes apart rather than back to back: a device that
 * wrongly treats a chain as one contiguous buffer then reads the gap's bytes, not the next piece's,
 * and a test sees the damage.
 *
 * <p>Single-threaded: the thread that drives the {@link VsockDriver}.
 */
public final class PacketRings {
    /** Largest payload a packet carries: the device's limit (Linux's VIRTIO_VSOCK_MAX_PKT_BUF_SIZE). */
    public static final int MAX_PAYLOAD = 64 * 1024;
    /** Bytes between two pieces of one chain. */
    public static final int GAP = 64;
    /** Bytes of one tx slot: the largest packet plus a gap after each piece (and one spare kilobyte). */
    public static final int TX_SLOT = VsockPacket.HEADER + MAX_PAYLOAD + 1024 + ChainLayout.MAX_PIECES * GAP;

    private static final Logger LOG = System.getLogger(PacketRings.class.getName());

    private final DriverRings rings;
    private final DriverQueue rx;
    private final DriverQueue tx;
    private final MemorySegment rxData;
    private final long rxDataGpa;
    private final MemorySegment txData;
    private final long txDataGpa;
    private final int rxBufferSize;
    private final int rxSlotBytes;
    private final boolean indirect;

    private ChainLayout txLayout = ChainLayout.HEADER_APART;
    private ChainLayout rxLayout = ChainLayout.WHOLE;

    /** Free tx slots as a stack; which slot each chain id holds. */
    private final int[] freeTx;
    private int freeTxCount;
    private final int[] txSlotOfId;
    /** Free rx slots; which slot each chain id holds; where each slot's pieces lie and how long they are. */
    private final int[] freeRx;
    private int freeRxCount;
    private final int[] rxSlotOfId;
    private final long[][] rxPieceGpa;
    private final int[][] rxPieceLength;
    private final int[] rxPieceCount;
    private int postedRx;

    private final int[] pieces = new int[ChainLayout.MAX_PIECES];
    private final byte[] headerBytes = new byte[VsockPacket.HEADER];
    private final MemorySegment headerSegment = MemorySegment.ofArray(headerBytes);
    private final byte[] rxBytes;
    private final MemorySegment rxSegment;
    private final PacketHeader rxHeader = new PacketHeader();
    private long malformed;

    /**
     * Lays out slots over the rings' data areas: {@code floor(txBytes / TX_SLOT)} tx slots and as many
     * rx buffers of {@code rxBufferSize} bytes as fit, each at most one per ring entry.
     */
    public PacketRings(DriverRings rings, int rxBufferSize) {
        if (rxBufferSize < VsockPacket.HEADER + 1) {
            throw new IllegalArgumentException("rx buffer of " + rxBufferSize + " bytes holds no packet");
        }
        this.rings = rings;
        this.rx = rings.queue(DriverRings.RX);
        this.tx = rings.queue(DriverRings.TX);
        this.rxData = rings.data(DriverRings.RX);
        this.rxDataGpa = rings.dataGpa(DriverRings.RX);
        this.txData = rings.data(DriverRings.TX);
        this.txDataGpa = rings.dataGpa(DriverRings.TX);
        this.rxBufferSize = rxBufferSize;
        this.rxSlotBytes = rxBufferSize + ChainLayout.MAX_PIECES * GAP;
        this.indirect = rings.maxIndirect() > 0;
        int txSlots = (int) Math.min(tx.size(), txData.byteSize() / TX_SLOT);
        int rxSlots = (int) Math.min(rx.size(), rxData.byteSize() / rxSlotBytes);
        if (txSlots < 1 || rxSlots < 1) {
            throw new IllegalArgumentException("data areas of " + txData.byteSize() + " (tx) and " + rxData.byteSize()
                    + " (rx) bytes hold no " + TX_SLOT + "-byte tx slot or " + rxSlotBytes + "-byte rx buffer");
        }
        this.freeTx = new int[txSlots];
        for (int i = 0; i < txSlots; i++) {
            freeTx[freeTxCount++] = i;
        }
        this.txSlotOfId = new int[tx.size()];
        this.freeRx = new int[rxSlots];
        for (int i = 0; i < rxSlots; i++) {
            freeRx[freeRxCount++] = i;
        }
        this.rxSlotOfId = new int[rx.size()];
        this.rxPieceGpa = new long[rxSlots][ChainLayout.MAX_PIECES];
        this.rxPieceLength = new int[rxSlots][ChainLayout.MAX_PIECES];
        this.rxPieceCount = new int[rxSlots];
        this.rxBytes = new byte[rxBufferSize];
        this.rxSegment = MemorySegment.ofArray(rxBytes);
    }

    /** Bytes of data area needed for {@code queueSize} tx slots. */
    public static long txAreaBytes(int queueSize) {
        return (long) queueSize * TX_SLOT;
    }

    /** Bytes of data area needed for {@code queueSize} rx buffers of {@code rxBufferSize}. */
    public static long rxAreaBytes(int queueSize, int rxBufferSize) {
        return (long) queueSize * (rxBufferSize + ChainLayout.MAX_PIECES * GAP);
    }

    /** How packets are cut into tx descriptors from now on. */
    public void txLayout(ChainLayout layout) {
        this.txLayout = layout;
    }

    /** How rx buffers are cut into descriptors from the next one posted on. */
    public void rxLayout(ChainLayout layout) {
        this.rxLayout = layout;
    }

    public int rxBufferSize() {
        return rxBufferSize;
    }

    /** Largest payload that fits in one rx buffer. */
    public int maxRxPayload() {
        return rxBufferSize - VsockPacket.HEADER;
    }

    /** Rx buffers the device holds now. */
    public int postedRx() {
        return postedRx;
    }

    /** Packets from the device that broke the rules (shorter than a header, len not matching the used length). */
    public long malformed() {
        return malformed;
    }

    /** Collects the tx chains the device is done with (their slots are free again) and returns how many. */
    public int reclaimTx() {
        int reclaimed = 0;
        for (int id; (id = tx.pollUsed()) >= 0; ) {
            freeTx[freeTxCount++] = txSlotOfId[id];
            reclaimed++;
        }
        return reclaimed;
    }

    /**
     * Sends the packet {@code header} describes with {@code length} payload bytes from
     * {@code payload[offset..]} (the header's len is set to {@code length}), cut by the tx layout.
     *
     * @return false, sending nothing, if no tx slot or ring room is free now
     */
    public boolean send(PacketHeader header, byte[] payload, int offset, int length) {
        if (length > MAX_PAYLOAD) {
            throw new IllegalArgumentException("payload of " + length + " bytes, at most " + MAX_PAYLOAD);
        }
        header.len(length).write(headerSegment, 0);
        return place(headerBytes, VsockPacket.HEADER, payload, offset, length, txLayout);
    }

    /**
     * Sends {@code bytes} as they are (a header that may lie, or not even a whole header), cut by
     * {@code layout}: for probing a device with packets a correct driver never sends.
     *
     * @return false if no tx slot or ring room is free now
     */
    public boolean sendRaw(byte[] bytes, ChainLayout layout) {
        if (bytes.length > TX_SLOT - ChainLayout.MAX_PIECES * GAP) {
            throw new IllegalArgumentException("raw packet of " + bytes.length + " bytes does not fit a tx slot");
        }
        return place(bytes, bytes.length, bytes, 0, 0, layout);
    }

    /** True if a packet cut into up to {@code pieces} descriptors could be sent now. */
    public boolean canSend() {
        reclaimTx();
        return freeTxCount > 0 && tx.freeDescriptors() >= (indirect ? 1 : 2);
    }

    /** Copies head[0..headLength) then tail[tailOffset..+tailLength) into a free slot, piece by piece, and submits. */
    private boolean place(byte[] head, int headLength, byte[] tail, int tailOffset, int tailLength, ChainLayout layout) {
        reclaimTx();
        int total = headLength + tailLength;
        int count = layout.cut(total, pieces);
        boolean asIndirect = indirect && count > 1;
        if (freeTxCount == 0 || tx.freeDescriptors() < (asIndirect ? 1 : count)) {
            return false;
        }
        int slot = freeTx[--freeTxCount];
        long offset = (long) slot * TX_SLOT;
        int copied = 0;
        for (int i = 0; i < count; i++) {
            int piece = pieces[i];
            long at = offset;
            for (int left = piece; left > 0; ) {
                int n;
                if (copied < headLength) {
                    n = Math.min(left, headLength - copied);
                    MemorySegment.copy(head, copied, txData, ValueLayout.JAVA_BYTE, at, n);
                } else {
                    n = left;
                    MemorySegment.copy(tail, tailOffset + copied - headLength, txData, ValueLayout.JAVA_BYTE, at, n);
                }
                copied += n;
                left -= n;
                at += n;
            }
            tx.addReadable(txDataGpa + offset, piece);
            offset += piece + GAP;
        }
        int id = asIndirect ? tx.submitIndirect() : tx.submit();
        if (id < 0) {
            freeTx[freeTxCount++] = slot;
            return false;
        }
        txSlotOfId[id] = slot;
        rings.publish(DriverRings.TX);
        return true;
    }

    /** Posts receive buffers until the slots or the ring run out, and publishes them. */
    public void postRx() {
        boolean posted = false;
        while (freeRxCount > 0) {
            int count = rxLayout.cut(rxBufferSize, pieces);
            boolean asIndirect = indirect && count > 1;
            if (rx.freeDescriptors() < (asIndirect ? 1 : count)) {
                break;
            }
            int slot = freeRx[--freeRxCount];
            long gpa = rxDataGpa + (long) slot * rxSlotBytes;
            for (int i = 0; i < count; i++) {
                rxPieceGpa[slot][i] = gpa;
                rxPieceLength[slot][i] = pieces[i];
                rx.addWritable(gpa, pieces[i]);
                gpa += pieces[i] + GAP;
            }
            rxPieceCount[slot] = count;
            int id = asIndirect ? rx.submitIndirect() : rx.submit();
            if (id < 0) {
                freeRx[freeRxCount++] = slot;
                break;
            }
            rxSlotOfId[id] = slot;
            postedRx++;
            posted = true;
        }
        if (posted) {
            rings.publish(DriverRings.RX);
        }
    }

    /**
     * Hands every packet the device has written to {@code handler}, re-posting each buffer, and
     * returns how many there were. A packet shorter than a header or whose len disagrees with the
     * used length is dropped, counted and logged.
     */
    public int poll(PacketHandler handler) {
        int handled = 0;
        for (int id; (id = rx.pollUsed()) >= 0; ) {
            int used = rx.usedLength();
            int slot = rxSlotOfId[id];
            postedRx--;
            int got = gather(slot, used);
            freeRx[freeRxCount++] = slot;
            if (got < VsockPacket.HEADER) {
                malformed++;
                LOG.log(Level.WARNING, "rx: the device used {0} bytes of a {1}-byte buffer, less than a header; dropped",
                        used, rxBufferSize);
                continue;
            }
            rxHeader.read(rxSegment, 0);
            if (VsockPacket.HEADER + (long) Integer.toUnsignedLong(rxHeader.len()) != got) {
                malformed++;
                LOG.log(Level.WARNING, "rx: header len {0} but the device used {1} bytes; dropped ({2})",
                        Integer.toUnsignedString(rxHeader.len()), used, rxHeader);
                continue;
            }
            handled++;
            handler.onPacket(rxHeader, rxBytes, VsockPacket.HEADER, rxHeader.len());
        }
        if (handled > 0 || freeRxCount > 0) {
            postRx();
        }
        return handled;
    }

    /** Copies the first {@code used} bytes of the slot's pieces into rxBytes; returns the bytes copied. */
    private int gather(int slot, int used) {
        if (used < 0 || used > rxBufferSize) {
            return -1;
        }
        int copied = 0;
        for (int i = 0; i < rxPieceCount[slot] && copied < used; i++) {
            int n = Math.min(rxPieceLength[slot][i], used - copied);
            MemorySegment.copy(rxData, ValueLayout.JAVA_BYTE, rxPieceGpa[slot][i] - rxDataGpa, rxBytes, copied, n);
            copied += n;
        }
        return copied;
    }

    /** Throws if the device broke a ring. */
    public void checkRings() throws VsockException {
        if (rx.isBroken() || tx.isBroken()) {
            throw new VsockException(VsockException.Kind.BROKEN, "the device broke a ring: rx "
                    + rx.brokenReason() + ", tx " + tx.brokenReason());
        }
    }
}
