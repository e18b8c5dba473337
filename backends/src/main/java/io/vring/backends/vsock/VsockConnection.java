package io.vring.backends.vsock;

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

    final int localPort;
    final int peerPort;
    final int type;
    final boolean hostInitiated;
    final SocketChannel host;
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
    /** Host bytes that arrived in the same read as the CONNECT line. */
    byte[] readAhead;
    int readAheadPos;

    VsockConnection(int localPort, int peerPort, int type, boolean hostInitiated, SocketChannel host, int bufAlloc,
                    State state) {
        this.localPort = localPort;
        this.peerPort = peerPort;
        this.type = type;
        this.hostInitiated = hostInitiated;
        this.host = host;
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

    boolean hasReadAhead() {
        return readAhead != null && readAheadPos < readAhead.length;
    }

    /** Host data may be waiting (socket readable or bytes kept from the handshake). */
    boolean hostDataWaiting() {
        return state == State.ESTABLISHED && !guestShutdownRcv && (hostReadable || hasReadAhead());
    }

    /** Whether an rx buffer would let this connection send something now. */
    boolean wantsRx() {
        // With host data and no credit, one rx buffer is still wanted: for the CREDIT_REQUEST.
        return state != State.CLOSED && (pending != 0 || (hostDataWaiting() && (peerFree() > 0 || !stalled)));
    }

    int backlogSize() {
        return backlog == null ? 0 : backlog.size();
    }

    String name() {
        return (hostInitiated ? "host" : "guest") + " connection " + Integer.toUnsignedString(localPort)
                + "<->" + Integer.toUnsignedString(peerPort);
    }
}
