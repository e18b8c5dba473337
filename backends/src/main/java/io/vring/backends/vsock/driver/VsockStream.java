package io.vring.backends.vsock.driver;

import java.lang.System.Logger;
import java.lang.System.Logger.Level;

/**
 * One guest-side vsock connection to the host (CID 2), opened by {@link VsockDriver#connect} or
 * accepted from a {@link VsockListener}: the connection state, credit flow control both ways
 * (virtio 1.2 §5.10.6.3) and a receive buffer of the advertised window.
 *
 * <p><b>Credit.</b> We advertise {@link #receiveBufferSize()} as buf_alloc and the bytes the
 * application has read as fwd_cnt; a CREDIT_UPDATE goes out once half the window has been read, and
 * in answer to every CREDIT_REQUEST. We send no more than the peer's buf_alloc minus what is in flight
 * (tx_cnt - peer fwd_cnt), and ask with one CREDIT_REQUEST per stall. A peer that sends past our
 * window is a protocol violation: the stream is reset and the driver counts it.
 *
 * <p><b>Close.</b> {@link #shutdownOutput()} is a half-close (SHUTDOWN SEND; reading goes on).
 * {@link #close()} sends SHUTDOWN with both flags and waits for the peer's RST, sending one itself
 * after {@link VsockDriverConfig#closeTimeout()}, as Linux does. {@link #abort()} resets at once.
 *
 * <p><b>SEQPACKET</b> ({@link VsockDriver#connectSeqpacket}): {@link #sendMessage} sends one message
 * in as many RW packets as the peer's credit needs, EOM (and EOR if asked) on the last, and refuses
 * one longer than the peer's buf_alloc, as Linux does (EMSGSIZE); {@link #receiveMessage} returns
 * one whole message, the boundaries kept however the device cut it. The byte calls ({@link #read},
 * {@link #write} and their non-blocking forms) are for STREAM only.
 *
 * <p>Blocking calls drive the whole driver while they wait; like the driver, a stream belongs to the
 * one thread that drives it. The data path (read, write, credit) allocates nothing.
 */
public final class VsockStream implements AutoCloseable {
    /** Where a connection stands. */
    public enum State { CONNECTING, ESTABLISHED, CLOSED }

    private static final Logger LOG = System.getLogger(VsockStream.class.getName());

    private final VsockDriver driver;
    private final int type;
    private final int localPort;
    private final int peerPort;
    private State state;
    private boolean reset;
    private int peerShutdown;
    private int ourShutdown;

    /** Receive side: a ring of bytes as big as the largest window advertised. */
    private byte[] buffer;
    private int readAt;
    private int buffered;
    private int bufAlloc;
    /** Bytes received (wrapping, as on the wire) and read by the application (fwd_cnt). */
    private int rxCnt;
    private int fwdCnt;
    private int lastSentFwdCnt;
    private int lastSentBufAlloc;
    private long bytesReceived;

    /** Send side: the peer's window as it last told us, and what we sent (tx_cnt). */
    private int peerBufAlloc;
    private int peerFwdCnt;
    private int txCnt;
    private boolean creditRequested;
    private long bytesSent;
    private int creditRequestsReceived;
    private int creditUpdatesReceived;

    /**
     * SEQPACKET receive side: the lengths of the whole messages in the receive ring, oldest first,
     * each with EOR in its top bit; grows (doubling) only when a window holds more messages than ever.
     */
    private int[] messageEnds = new int[16];
    private int firstMessage;
    private int messages;
    /** Bytes of the message still arriving (no EOM yet). */
    private int partial;
    private boolean lastEor;

    VsockStream(VsockDriver driver, int type, int localPort, int peerPort, int bufAlloc, State state) {
        this.driver = driver;
        this.type = type;
        this.localPort = localPort;
        this.peerPort = peerPort;
        this.bufAlloc = bufAlloc;
        this.buffer = new byte[Math.max(bufAlloc, 1)];
        this.state = state;
    }

    // ---- identity and state ------------------------------------------------------------------

    /** The socket type on the wire ({@link VsockPacket#STREAM} or {@link VsockPacket#SEQPACKET}). */
    public int type() {
        return type;
    }

    /** Our port. */
    public int localPort() {
        return localPort;
    }

    /** The host's port. */
    public int peerPort() {
        return peerPort;
    }

    public State state() {
        return state;
    }

    public boolean isEstablished() {
        return state == State.ESTABLISHED;
    }

    /** True once the peer sent RST (or we reset the stream). */
    public boolean isReset() {
        return reset;
    }

    /** SHUTDOWN flags the peer has sent so far ({@link VsockPacket#SHUTDOWN_RCV}, {@link VsockPacket#SHUTDOWN_SEND}). */
    public int peerShutdown() {
        return peerShutdown;
    }

    // ---- counters ----------------------------------------------------------------------------

    /** Payload bytes that arrived, read or not. */
    public long bytesReceived() {
        return bytesReceived;
    }

    /** Payload bytes sent. */
    public long bytesSent() {
        return bytesSent;
    }

    /** Bytes received and not yet read. */
    public int available() {
        return buffered;
    }

    public int creditRequestsReceived() {
        return creditRequestsReceived;
    }

    public int creditUpdatesReceived() {
        return creditUpdatesReceived;
    }

    /** The peer's receive window (its last buf_alloc). */
    public int peerBufAlloc() {
        return peerBufAlloc;
    }

    /** Bytes we may send now: the peer's buf_alloc minus our bytes it has not yet forwarded. */
    public long peerCredit() {
        long inFlight = Integer.toUnsignedLong(txCnt - peerFwdCnt);
        return Math.max(0, Integer.toUnsignedLong(peerBufAlloc) - inFlight);
    }

    /** Our receive window (buf_alloc). */
    public int receiveBufferSize() {
        return bufAlloc;
    }

    /** fwd_cnt: bytes the application has read (wrapping). */
    public int fwdCnt() {
        return fwdCnt;
    }

    // ---- the receive window ------------------------------------------------------------------

    /**
     * Sets our receive window (SO_VM_SOCKETS_BUFFER_SIZE) and, on an established stream, tells the
     * peer at once with a CREDIT_UPDATE.
     */
    public void receiveBufferSize(int size) throws VsockException {
        if (size < 0) {
            throw new IllegalArgumentException("negative buffer size " + size);
        }
        bufAlloc = size;
        if (size > buffer.length) {
            byte[] bigger = new byte[size];
            for (int i = 0; i < buffered; i++) {
                bigger[i] = buffer[(readAt + i) % buffer.length];
            }
            buffer = bigger;
            readAt = 0;
        }
        if (state == State.ESTABLISHED) {
            sendCreditUpdate();
        }
    }

    /** Sends our window now (CREDIT_UPDATE). */
    public void sendCreditUpdate() throws VsockException {
        sendControl(VsockPacket.CREDIT_UPDATE, 0);
    }

    // ---- reading -----------------------------------------------------------------------------

    /**
     * Reads what has arrived, up to {@code length} bytes, without waiting.
     *
     * @return bytes read; 0 if none is there now; -1 at the end of the stream (the peer shut its
     *         output or closed, and everything before it was read)
     */
    public int readSome(byte[] into, int offset, int length) throws VsockException {
        requireType(VsockPacket.STREAM, "readSome");
        if (buffered == 0) {
            if ((peerShutdown & VsockPacket.SHUTDOWN_SEND) != 0) {
                return -1;
            }
            if (reset) {
                throw new VsockException(VsockException.Kind.RESET, "port " + peerPort + " reset the stream");
            }
            return 0;
        }
        int n = Math.min(length, buffered);
        take(into, offset, n, n);
        return n;
    }

    /** Copies {@code copy} bytes of the receive ring out and consumes {@code consume} (credited to the peer). */
    private void take(byte[] into, int offset, int copy, int consume) throws VsockException {
        int first = Math.min(copy, buffer.length - readAt);
        System.arraycopy(buffer, readAt, into, offset, first);
        System.arraycopy(buffer, 0, into, offset + first, copy - first);
        readAt = (readAt + consume) % buffer.length;
        buffered -= consume;
        fwdCnt += consume;
        if (state == State.ESTABLISHED && Integer.toUnsignedLong(fwdCnt - lastSentFwdCnt) >= Math.max(1, bufAlloc / 2)) {
            sendCreditUpdate();
        }
    }

    /**
     * SEQPACKET: takes the oldest whole message, if one is there, without waiting. Copies at most
     * {@code length} bytes of it; the rest of a longer message is dropped (as recv without room does,
     * MSG_TRUNC): compare the result with {@code length}.
     *
     * @return the message's length; 0 if no whole message is there now; -1 at the end (the peer shut
     *         its output or closed, and every message before it was taken)
     */
    public int pollMessage(byte[] into, int offset, int length) throws VsockException {
        requireType(VsockPacket.SEQPACKET, "pollMessage");
        while (messages > 0) {
            int end = messageEnds[firstMessage];
            firstMessage = (firstMessage + 1) % messageEnds.length;
            messages--;
            int size = end & Integer.MAX_VALUE;
            lastEor = end < 0;
            take(into, offset, Math.min(size, length), size);
            if (size > 0) { // an empty message says nothing; Linux never sends one
                return size;
            }
        }
        if ((peerShutdown & VsockPacket.SHUTDOWN_SEND) != 0) {
            return -1;
        }
        if (reset) {
            throw new VsockException(VsockException.Kind.RESET, "port " + peerPort + " reset the connection");
        }
        return 0;
    }

    /**
     * SEQPACKET: waits up to {@link VsockDriverConfig#ioTimeout()} for a whole message and takes it
     * ({@link #pollMessage}); {@link #lastMessageEor()} then tells whether it ended a record.
     *
     * @return the message's length, or -1 at the end
     */
    public int receiveMessage(byte[] into, int offset, int length) throws VsockException {
        long deadline = driver.deadline(driver.config().ioTimeout());
        for (;;) {
            int n = pollMessage(into, offset, length);
            if (n != 0) {
                return n;
            }
            driver.progress(DriverRings.RX, deadline, "a message from port", peerPort);
        }
    }

    /** Whether the message {@link #pollMessage} or {@link #receiveMessage} last took ended a record (EOR, MSG_EOR). */
    public boolean lastMessageEor() {
        return lastEor;
    }

    /** Whole messages received and not yet taken (SEQPACKET). */
    public int messagesAvailable() {
        return messages;
    }

    /**
     * Reads at least one byte, waiting up to {@link VsockDriverConfig#ioTimeout()} for it.
     *
     * @return bytes read, or -1 at the end of the stream
     */
    public int read(byte[] into, int offset, int length) throws VsockException {
        requireType(VsockPacket.STREAM, "read");
        if (length == 0) {
            return 0;
        }
        long deadline = driver.deadline(driver.config().ioTimeout());
        for (;;) {
            int n = readSome(into, offset, length);
            if (n != 0) {
                return n;
            }
            driver.progress(DriverRings.RX, deadline, "data from port", peerPort);
        }
    }

    // ---- writing -----------------------------------------------------------------------------

    /**
     * Sends as much of {@code data[offset..offset+length)} as the peer's credit and the free tx slots
     * allow now, in packets of at most 64 KiB, without waiting.
     *
     * @return bytes sent (0 if there is no credit or no tx slot now)
     */
    public int writeSome(byte[] data, int offset, int length) throws VsockException {
        requireType(VsockPacket.STREAM, "writeSome");
        return send(data, offset, length, 0);
    }

    /** Sends what credit and tx slots allow now; {@code lastFlags} go on the packet that reaches {@code length}. */
    private int send(byte[] data, int offset, int length, int lastFlags) throws VsockException {
        checkWritable();
        int sent = 0;
        while (sent < length) {
            long credit = peerCredit();
            if (credit == 0) {
                break;
            }
            int chunk = (int) Math.min(Math.min(credit, PacketRings.MAX_PAYLOAD), length - sent);
            int flags = sent + chunk == length ? lastFlags : 0;
            if (!driver.packets().send(header(VsockPacket.RW, flags), data, offset + sent, chunk)) {
                break;
            }
            noteSent();
            txCnt += chunk;
            sent += chunk;
        }
        if (sent > 0) {
            bytesSent += sent;
            creditRequested = false;
        }
        return sent;
    }

    /**
     * Sends all of {@code data[offset..offset+length)}, waiting for credit and tx slots; with no
     * credit it asks once (CREDIT_REQUEST) and waits for the update.
     *
     * @throws VsockException RESET if the peer resets the stream, TIMED_OUT after
     *                        {@link VsockDriverConfig#ioTimeout()} without progress
     */
    public void write(byte[] data, int offset, int length) throws VsockException {
        requireType(VsockPacket.STREAM, "write");
        sendAll(data, offset, length, 0);
    }

    /**
     * SEQPACKET: sends {@code data[offset..offset+length)} as one message, EOM on its last packet and
     * EOR too if {@code endOfRecord} (send with MSG_EOR), waiting for credit and tx slots as
     * {@link #write} does.
     *
     * @throws IllegalArgumentException for an empty message, or one longer than the peer's buf_alloc,
     *                                  which it could never take whole (Linux: EMSGSIZE)
     */
    public void sendMessage(byte[] data, int offset, int length, boolean endOfRecord) throws VsockException {
        requireType(VsockPacket.SEQPACKET, "sendMessage");
        if (length <= 0) {
            throw new IllegalArgumentException("a SEQPACKET message has at least one byte");
        }
        if (length > Integer.toUnsignedLong(peerBufAlloc)) {
            throw new IllegalArgumentException("a message of " + length + " bytes is longer than the peer's buffer of "
                    + Integer.toUnsignedString(peerBufAlloc) + " (EMSGSIZE)");
        }
        sendAll(data, offset, length, VsockPacket.EOM | (endOfRecord ? VsockPacket.EOR : 0));
    }

    private void sendAll(byte[] data, int offset, int length, int lastFlags) throws VsockException {
        long deadline = driver.deadline(driver.config().ioTimeout());
        while (length > 0) {
            int n = send(data, offset, length, lastFlags);
            offset += n;
            length -= n;
            if (n > 0) {
                deadline = driver.deadline(driver.config().ioTimeout());
            } else {
                boolean noCredit = peerCredit() == 0;
                if (noCredit && !creditRequested) {
                    creditRequested = true;
                    sendControl(VsockPacket.CREDIT_REQUEST, 0);
                }
                driver.progress(noCredit ? DriverRings.RX : DriverRings.TX, deadline, "credit or tx slot for port", peerPort);
            }
        }
    }

    private void requireType(int wanted, String call) {
        if (type != wanted) {
            throw new IllegalStateException(call + " is for " + (wanted == VsockPacket.STREAM ? "STREAM" : "SEQPACKET")
                    + " connections; this one is type " + type);
        }
    }

    private void checkWritable() throws VsockException {
        if (reset) {
            throw new VsockException(VsockException.Kind.RESET, "port " + peerPort + " reset the stream");
        }
        if (state != State.ESTABLISHED) {
            throw new VsockException(VsockException.Kind.CLOSED, "stream to port " + peerPort + " is " + state);
        }
        if ((ourShutdown & VsockPacket.SHUTDOWN_SEND) != 0) {
            throw new VsockException(VsockException.Kind.CLOSED, "output to port " + peerPort + " was shut down");
        }
    }

    // ---- closing -----------------------------------------------------------------------------

    /** Half-close: SHUTDOWN(SEND); the peer reads to its end, and we may still read. */
    public void shutdownOutput() throws VsockException {
        shutdown(VsockPacket.SHUTDOWN_SEND);
    }

    /** Sends SHUTDOWN with {@code flags} ({@link VsockPacket#SHUTDOWN_RCV} and/or {@link VsockPacket#SHUTDOWN_SEND}). */
    public void shutdown(int flags) throws VsockException {
        if (state != State.ESTABLISHED) {
            return;
        }
        ourShutdown |= flags;
        sendControl(VsockPacket.SHUTDOWN, flags);
    }

    /** Resets the stream at once (RST) and forgets it. */
    public void abort() throws VsockException {
        if (state == State.CLOSED) {
            return;
        }
        closed(true);
        sendControl(VsockPacket.RST, 0);
    }

    /**
     * Closes the stream: SHUTDOWN both ways, then the peer's RST (or ours after the close timeout).
     * Idempotent.
     */
    @Override
    public void close() throws VsockException {
        if (state == State.CLOSED) {
            driver.forget(this);
            return;
        }
        if (state == State.CONNECTING) {
            abort();
            return;
        }
        ourShutdown = VsockPacket.SHUTDOWN_RCV | VsockPacket.SHUTDOWN_SEND;
        sendControl(VsockPacket.SHUTDOWN, ourShutdown);
        long deadline = driver.deadline(driver.config().closeTimeout());
        try {
            while (state != State.CLOSED) {
                driver.progress(DriverRings.RX, deadline, "RST after SHUTDOWN from port", peerPort);
            }
        } catch (VsockException e) {
            if (e.kind() != VsockException.Kind.TIMED_OUT) {
                throw e;
            }
            LOG.log(Level.DEBUG, "port {0} did not answer SHUTDOWN within {1}: RST", peerPort,
                    driver.config().closeTimeout());
            abort();
        }
    }

    // ---- packets ---------------------------------------------------------------------------

    /** The driver's shared tx header, filled for a packet of this stream. */
    private PacketHeader header(int op, int flags) {
        return driver.txHeader().set(driver.guestCid(), VsockPacket.HOST_CID, localPort, peerPort, type, op, flags,
                bufAlloc, fwdCnt);
    }

    private void noteSent() {
        lastSentFwdCnt = fwdCnt;
        lastSentBufAlloc = Math.max(lastSentBufAlloc, bufAlloc);
    }

    /** Sends a packet without payload, waiting for a tx slot if none is free. */
    void sendControl(int op, int flags) throws VsockException {
        driver.sendBlocking(header(op, flags));
        noteSent();
    }

    /** Sends the REQUEST that opens the stream. */
    void sendRequest() throws VsockException {
        sendControl(VsockPacket.REQUEST, 0);
    }

    /** A REQUEST accepted: the peer's window is in it; RESPONSE goes back. */
    void accepted(PacketHeader request) throws VsockException {
        state = State.ESTABLISHED;
        peerBufAlloc = request.bufAlloc();
        peerFwdCnt = request.fwdCnt();
        sendControl(VsockPacket.RESPONSE, 0);
    }

    /** A packet for this stream, from the driver's dispatch. */
    void onPacket(PacketHeader header, byte[] bytes, int offset, int length) throws VsockException {
        int op = header.op();
        if (op != VsockPacket.RST) {
            peerBufAlloc = header.bufAlloc();
            peerFwdCnt = header.fwdCnt();
        }
        switch (op) {
            case VsockPacket.RESPONSE -> {
                if (state == State.CONNECTING) {
                    state = State.ESTABLISHED;
                } else {
                    driver.violation(this, "RESPONSE on a stream that is " + state);
                }
            }
            case VsockPacket.RST -> {
                if (state == State.CONNECTING) {
                    LOG.log(Level.DEBUG, "port {0} refused the connection (RST)", peerPort);
                }
                closed(true);
            }
            case VsockPacket.RW -> receive(header.flags(), bytes, offset, length);
            case VsockPacket.SHUTDOWN -> peerShutdown |= header.flags() & (VsockPacket.SHUTDOWN_RCV | VsockPacket.SHUTDOWN_SEND);
            case VsockPacket.CREDIT_REQUEST -> {
                creditRequestsReceived++;
                if (state == State.ESTABLISHED) {
                    sendCreditUpdate();
                }
            }
            case VsockPacket.CREDIT_UPDATE -> creditUpdatesReceived++;
            default -> driver.violation(this, VsockPacket.opName(op) + " on an open stream");
        }
    }

    private void receive(int flags, byte[] bytes, int offset, int length) throws VsockException {
        if (state != State.ESTABLISHED) {
            driver.violation(this, "RW of " + length + " bytes on a stream that is " + state);
            return;
        }
        long window = Integer.toUnsignedLong(Math.max(lastSentBufAlloc, bufAlloc));
        if (Integer.toUnsignedLong(rxCnt - lastSentFwdCnt) + length > window || buffered + length > buffer.length) {
            driver.creditOverrun(this, "RW of " + length + " bytes past our window: " + Integer.toUnsignedLong(rxCnt - lastSentFwdCnt)
                    + " in flight of buf_alloc " + window);
            abort();
            return;
        }
        int writeAt = (readAt + buffered) % buffer.length;
        int first = Math.min(length, buffer.length - writeAt);
        System.arraycopy(bytes, offset, buffer, writeAt, first);
        System.arraycopy(bytes, offset + first, buffer, 0, length - first);
        buffered += length;
        rxCnt += length;
        bytesReceived += length;
        if (type == VsockPacket.SEQPACKET) {
            partial += length;
            if ((flags & VsockPacket.EOM) != 0) {
                endMessage((flags & VsockPacket.EOR) != 0);
            }
        }
    }

    private void endMessage(boolean eor) {
        if (messages == messageEnds.length) {
            int[] larger = new int[messageEnds.length * 2];
            for (int i = 0; i < messages; i++) {
                larger[i] = messageEnds[(firstMessage + i) % messageEnds.length];
            }
            messageEnds = larger;
            firstMessage = 0;
        }
        messageEnds[(firstMessage + messages) % messageEnds.length] = partial | (eor ? Integer.MIN_VALUE : 0);
        messages++;
        partial = 0;
    }

    private void closed(boolean byReset) {
        reset |= byReset;
        state = State.CLOSED;
        driver.forget(this);
    }

    @Override
    public String toString() {
        return "VsockStream[" + driver.guestCid() + ":" + Integer.toUnsignedString(localPort) + " -> 2:"
                + Integer.toUnsignedString(peerPort) + " " + state + (reset ? " reset" : "") + "]";
    }
}
