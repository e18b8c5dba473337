package io.vring.backends.vsock;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.SocketChannel;

/**
 * One vsock connection between the guest and a host socket, keyed by (local port, peer port): the
 * local port is the host-side port (the guest's dst_port), the peer port the guest's. Every field is
 * guarded by the {@link ConnectionTable}'s lock.
 *
 * <p><b>Credit, device to guest.</b> The device may send the guest {@code peerBufAlloc - (txCnt -
 * peerFwdCnt)} more payload bytes (u32 arithmetic). It reads the host socket no further than that.
 *
 * <p><b>Credit, guest to device.</b> The device advertises {@code bufAlloc} and {@code fwdCnt}, the
 * bytes actually written to the host socket. Bytes the socket did not take wait in the
 * {@link TxBacklog}, whose capacity is {@code bufAlloc}, so a guest within its credit never
 * overflows it.
 *
 * <p><b>SEQPACKET.</b> The host socket is an AF_UNIX SOCK_SEQPACKET fd ({@link #fd}, no channel)
 * watched by {@link SeqpacketHost}. Guest messages wait in a {@link SeqpacketBacklog}; a host record
 * is read whole into {@link #record} and goes to the guest in as many RW packets as its rx buffers
 * and credit need, EOM and EOR on the last.
 */
final class VsockConnection {
    enum State {
        /** Host-initiated: REQUEST queued or sent to the guest, waiting for RESPONSE. */
        REQUEST_SENT,
        /** Guest-initiated: a non-blocking connect to {@code <uds>_<port>} is in progress. */
        CONNECTING_TO_HOST,
        ESTABLISHED,
        /** Removed from the table; the host socket is closed. */
        CLOSED
    }

    /** Bits of packets waiting for an rx buffer, served in the order listed. RST is sent apart. */
    static final int SEND_REQUEST = 1, SEND_RESPONSE = 2, SEND_SHUTDOWN = 4, SEND_CREDIT_UPDATE = 8,
            SEND_CREDIT_REQUEST = 16;

    /**
     * The longest host record the device takes (Linux's default and largest vsock buffer, which a
     * whole guest message must fit); a longer one resets the connection.
     */
    static final int MAX_HOST_RECORD = 256 * 1024;

    final int localPort;
    final int peerPort;
    final int type;
    final boolean hostInitiated;
    /** The stream host socket; null on a SEQPACKET connection. */
    final SocketChannel host;
    /** The SEQPACKET host socket's fd; -1 on a stream connection. */
    final int fd;
    SelectionKey key;
    int interest;
    State state;

    final int bufAlloc;
    int fwdCnt;
    int lastSentFwdCnt;

    int peerBufAlloc;
    int peerFwdCnt;
    int txCnt;

    int pending;
    int shutdownFlags;
    boolean queued;
    boolean hostReadable;
    boolean hostEof;
    boolean guestShutdownRcv;
    boolean guestShutdownSend;
    boolean hostOutputShut;
    /** A CREDIT_REQUEST went out for the current stall; cleared when credit comes back. */
    boolean stalled;
    /** Nanotime after which the connection is reset (0: none). */
    long deadline;

    TxBacklog backlog;
    SeqpacketBacklog messages;
    /** The host record being delivered (SEQPACKET), allocated on the first read; its length and the bytes sent so far. */
    MemorySegment record;
    int recordLength;
    int recordSent;
    /** Host bytes that arrived in the same read as the CONNECT line. */
    byte[] readAhead;
    int readAheadPos;

    VsockConnection(int localPort, int peerPort, int type, boolean hostInitiated, SocketChannel host, int bufAlloc,
                    State state) {
        this(localPort, peerPort, type, hostInitiated, host, -1, bufAlloc, state);
    }

    /** A guest-initiated SEQPACKET connection over the connected host socket {@code fd}. */
    VsockConnection(int localPort, int peerPort, int fd, int bufAlloc) {
        this(localPort, peerPort, VsockHeader.TYPE_SEQPACKET, false, null, fd, bufAlloc, State.ESTABLISHED);
    }

    private VsockConnection(int localPort, int peerPort, int type, boolean hostInitiated, SocketChannel host, int fd,
                            int bufAlloc, State state) {
        this.localPort = localPort;
        this.peerPort = peerPort;
        this.type = type;
        this.hostInitiated = hostInitiated;
        this.host = host;
        this.fd = fd;
        this.bufAlloc = bufAlloc;
        this.state = state;
    }

    static long key(int localPort, int peerPort) {
        return ((long) localPort << 32) | Integer.toUnsignedLong(peerPort);
    }

    long key() {
        return key(localPort, peerPort);
    }

    /** Payload bytes the guest can take now (never negative, also if the guest shrank buf_alloc). */
    long peerFree() {
        long inFlight = Integer.toUnsignedLong(txCnt - peerFwdCnt);
        return Math.max(0, Integer.toUnsignedLong(peerBufAlloc) - inFlight);
    }

    boolean seqpacket() {
        return fd >= 0;
    }

    /** Bytes of a host record not yet sent to the guest. */
    boolean recordPending() {
        return recordSent < recordLength;
    }

    /** Room for a whole host record of {@code capacity} bytes plus one (so a longer record shows as too long). */
    MemorySegment recordBuffer(int capacity) {
        if (record == null) {
            record = MemorySegment.ofBuffer(ByteBuffer.allocateDirect(capacity + 1));
        }
        return record;
    }

    /** A SEQPACKET message from the guest is half received: its end needs credit that only a forward can free. */
    boolean awaitsMessageEnd() {
        return messages != null && messages.assembling() > 0;
    }

    boolean hasReadAhead() {
        return readAhead != null && readAheadPos < readAhead.length;
    }

    /** Host data may be waiting (socket readable or bytes kept from the handshake). */
    boolean hostDataWaiting() {
        return state == State.ESTABLISHED && !guestShutdownRcv && (hostReadable || hasReadAhead() || recordPending());
    }

    /** Whether an rx buffer would let this connection send something now. */
    boolean wantsRx() {
        // With host data and no credit, one rx buffer is still wanted: for the CREDIT_REQUEST.
        return state != State.CLOSED && (pending != 0 || (hostDataWaiting() && (peerFree() > 0 || !stalled)));
    }

    int backlogSize() {
        return backlog != null ? backlog.size() : messages != null ? messages.size() : 0;
    }

    String name() {
        return (hostInitiated ? "host" : "guest") + " connection " + Integer.toUnsignedString(localPort)
                + "<->" + Integer.toUnsignedString(peerPort);
    }
}
