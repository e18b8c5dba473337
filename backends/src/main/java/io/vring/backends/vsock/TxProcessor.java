package io.vring.backends.vsock;

import io.vring.engine.DeviceQueue;
import io.vring.engine.chain.ChainReader;
import io.vring.engine.chain.DescriptorChain;
import io.vring.engine.os.Libc;
import io.vring.engine.os.NativeCallException;
import io.vring.protocol.RingHandle;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

import static io.vring.backends.vsock.VsockHeader.*;

/**
 * The tx ring's side of the device: every packet the guest sends, parsed from any descriptor split
 * (the header at chain offset 0, the payload at 44), checked, and applied to its connection. Runs
 * on the tx ring's worker thread; each packet is handled under the table's lock.
 *
 * <p>What the guest may get wrong and what it gets back: a chain shorter than a header, or a
 * {@code src_cid} that is not its own: dropped. An unknown
 * type or op, a {@code len} longer than the chain, a control packet with a payload, a payload over
 * 64 KiB or over its credit, a packet for a connection that does not exist: RST (and the connection,
 * if any, is closed). Never an RST for an RST. Each is logged and counted; other connections go on.
 *
 * <p>A packet to another guest's CID goes to that VM's {@link SiblingInbox} if the two share a group
 * ({@link Siblings}); to a CID nobody here serves (or outside the groups, or whose driver is not
 * running) it is answered with an RST from that CID, so the guest's connect fails at once. While
 * the sibling's inbox is full the chain is kept and retried when the sibling wakes this ring.
 */
final class TxProcessor {
    private static final System.Logger LOG = System.getLogger(TxProcessor.class.getName());
    private static final int BATCH = 64;
    private static final String NO_CONNECTION = "no such connection";

    private final ConnectionTable table;
    private final VsockConfig config;
    private final VsockHeader header = new VsockHeader();
    private final ChainReader reader = new ChainReader();
    private final ByteBuffer staging = ByteBuffer.allocateDirect(MAX_PAYLOAD);
    private final MemorySegment stagingSegment = MemorySegment.ofBuffer(staging);
    private final Siblings siblings;
    private final SiblingInbox ownInbox;
    private final VsockHeader reset = new VsockHeader();
    private volatile boolean seqpacket;
    /** The tx ring's handle while it runs: a sibling whose inbox was full wakes it. */
    private volatile RingHandle handle;
    /** A chain whose packet waits for room in a sibling's inbox; retried before the next poll. */
    private DescriptorChain waiting;

    TxProcessor(ConnectionTable table, VsockConfig config, Siblings siblings, SiblingInbox ownInbox) {
        this.table = table;
        this.config = config;
        this.siblings = siblings;
        this.ownInbox = ownInbox;
    }

    /** The ring starts (with its handle) or stops (null); nothing polled from an earlier queue is valid. */
    void handle(RingHandle handle) {
        this.handle = handle;
        this.waiting = null;
    }

    /** The ring stops: a packet still waiting for a sibling's inbox is dropped (its guest is told nothing). */
    void stop(DeviceQueue queue) {
        if (waiting != null) {
            queue.addUsed(waiting, 0);
            waiting = null;
            synchronized (table.lock) {
                table.stats.dropped++;
            }
            table.warnings.warn("the tx ring stopped while a packet waited for a sibling VM's inbox; dropped");
        }
    }

    void seqpacket(boolean negotiated) {
        this.seqpacket = negotiated;
    }

    int process(DeviceQueue queue) {
        int done = 0;
        DescriptorChain chain;
        while (done < BATCH && (chain = waiting != null ? waiting : queue.poll()) != null) {
            boolean taken;
            synchronized (table.lock) {
                taken = handle(chain);
                table.wakeRxIfQueued();
            }
            if (!taken) {
                waiting = chain; // the flyweight stays valid: nothing polls this ring meanwhile
                break;
            }
            waiting = null;
            // The guest ignores the used length of a tx buffer; 0 as the reference devices write.
            queue.addUsed(chain, 0);
            done++;
        }
        return done;
    }

    /** Applies one packet; false only when it is for a sibling whose inbox has no room now. */
    private boolean handle(DescriptorChain chain) {
        reader.reset(chain);
        if (reader.remaining() < SIZE) {
            malformed("a tx chain of " + reader.remaining() + " readable bytes cannot hold a " + SIZE + "-byte header; dropped");
            return true;
        }
        reader.read(header.bytes(), 0, SIZE);
        int op = header.op();
        int type = header.type();
        int localPort = header.dstPort();
        int peerPort = header.srcPort();
        long len = Integer.toUnsignedLong(header.len());
        if (header.srcCid() != config.guestCid()) {
            dropped(header.describe() + ": src_cid is not the guest's CID " + config.guestCid());
            return true;
        }
        if (header.dstCid() != HOST_CID) {
            return toSibling(header.dstCid(), op, len);
        }
        VsockConnection connection = table.get(localPort, peerPort);
        if (op == OP_RST) {
            if (connection != null) {
                LOG.log(System.Logger.Level.DEBUG, "{0}: guest reset {1}", table.name(), connection.name());
                table.close(connection);
            }
            return true;
        }
        String problem = problem(op, type, len, connection);
        if (problem == NO_CONNECTION) {
            // Normal after a close: a guest still reading sends CREDIT_UPDATEs for a while. RST, quietly.
            table.stats.strays++;
            LOG.log(System.Logger.Level.DEBUG, "{0}: {1} for no connection; RST", table.name(), VsockHeader.opName(op));
            table.queueReset(localPort, peerPort, type);
            return true;
        }
        if (problem != null) {
            malformed(header.describe() + ": " + problem + "; RST");
            refuse(connection, localPort, peerPort, type, problem);
            return true;
        }
        if (connection != null) {
            takeCredit(connection);
        }
        switch (op) {
            case OP_REQUEST -> request(localPort, peerPort, type);
            case OP_RESPONSE -> response(connection);
            case OP_SHUTDOWN -> shutdown(connection, header.flags());
            case OP_RW -> data(connection, (int) len);
            case OP_CREDIT_UPDATE -> { }
            case OP_CREDIT_REQUEST -> table.send(connection, VsockConnection.SEND_CREDIT_UPDATE);
            default -> throw new IllegalStateException("op " + op + " passed the checks");
        }
        return true;
    }

    /** A packet for guest {@code cid}: into its inbox, or an RST from {@code cid} if it cannot be reached. */
    private boolean toSibling(long cid, int op, long len) {
        VsockDevice to = siblings == null ? null : siblings.route(config, cid);
        if (len > MAX_PAYLOAD || len > reader.remaining() || (op != OP_RW && len != 0)) {
            malformed(header.describe() + ": len does not fit the packet or the chain; dropped");
            return true;
        }
        if (to == null || !to.guestDriverRunning()) {
            table.stats.refused++;
            LOG.log(System.Logger.Level.DEBUG, "{0}: {1}: no guest with CID {2} is reachable; RST", table.name(),
                    header.describe(), Long.toUnsignedString(cid));
            if (op != OP_RST) {
                resetFrom(cid);
            }
            return true;
        }
        if (!to.inbox().offer(header, reader, (int) len, handle)) {
            return false;
        }
        table.stats.siblingPackets++;
        to.wakeRx();
        return true;
    }

    /** An RST as if from guest {@code cid} to the sender, through this VM's own inbox (the RST queue speaks for the host). */
    private void resetFrom(long cid) {
        reset.set(header.srcCid(), header.dstPort(), header.srcPort(), 0, header.type(), OP_RST, 0, 0, 0).fromCid(cid);
        if (ownInbox.offer(reset, null, 0, null)) {
            table.wakeRxNow();
        } else {
            table.stats.dropped++;
        }
    }

    /** Why the packet is refused with an RST, or null if it is well formed for its connection. */
    private String problem(int op, int type, long len, VsockConnection connection) {
        if (type != TYPE_STREAM && !(type == TYPE_SEQPACKET && seqpacket)) {
            return "type " + type + " is not supported";
        }
        if (op < OP_REQUEST || op > OP_CREDIT_REQUEST) {
            return "unknown op";
        }
        if (len > reader.remaining()) {
            return "len " + len + " but the chain holds " + reader.remaining() + " payload bytes";
        }
        if (op != OP_RW && len != 0) {
            return "a control packet carries no payload";
        }
        if (len > MAX_PAYLOAD) {
            return "payload over " + MAX_PAYLOAD + " bytes";
        }
        if (op == OP_REQUEST) {
            return connection == null ? null : "REQUEST for a connection already open";
        }
        if (connection == null) {
            return NO_CONNECTION;
        }
        if (connection.type != type) {
            return "type " + type + " on a connection of type " + connection.type;
        }
        return null;
    }

    private void refuse(VsockConnection connection, int localPort, int peerPort, int type, String why) {
        if (connection != null) {
            table.reset(connection, why);
        } else {
            table.queueReset(localPort, peerPort, type);
        }
    }

    /** Every guest packet carries its receive window; credit that returns ends a stall. */
    private void takeCredit(VsockConnection connection) {
        connection.peerBufAlloc = header.bufAlloc();
        connection.peerFwdCnt = header.fwdCnt();
        if (connection.stalled && connection.peerFree() > 0) {
            connection.stalled = false;
        }
        table.offerRx(connection);
    }

    /** Guest connects to host port {@code localPort}: connect to {@code <uds-path>_<port>}. */
    private void request(int localPort, int peerPort, int type) {
        if (!table.roomFor("the guest's REQUEST to port " + Integer.toUnsignedString(localPort))) {
            table.queueReset(localPort, peerPort, type);
            return;
        }
        Path path = config.listenerPath(localPort);
        if (type == TYPE_SEQPACKET) {
            requestSeqpacket(localPort, peerPort, path);
            return;
        }
        SocketChannel channel = null;
        try {
            channel = SocketChannel.open(StandardProtocolFamily.UNIX);
            channel.configureBlocking(false);
            boolean connected = channel.connect(UnixDomainSocketAddress.of(path));
            VsockConnection connection = new VsockConnection(localPort, peerPort, type, false, channel,
                    config.txBufferSize(), connected ? VsockConnection.State.ESTABLISHED
                            : VsockConnection.State.CONNECTING_TO_HOST);
            table.add(connection);
            takeCredit(connection);
            table.register(connection, connected ? SelectionKey.OP_READ : SelectionKey.OP_CONNECT);
            if (connected) {
                table.send(connection, VsockConnection.SEND_RESPONSE);
            } else {
                connection.deadline = System.nanoTime() + VsockDevice.CONNECT_TIMEOUT_NANOS;
            }
        } catch (IOException | RuntimeException e) {
            closeQuietly(channel);
            table.stats.refused++;
            LOG.log(System.Logger.Level.DEBUG, "{0}: guest port {1} -> {2}: {3}; RST", table.name(),
                    Integer.toUnsignedString(peerPort), path, e.toString());
            table.queueReset(localPort, peerPort, type);
        }
    }

    /**
     * A SEQPACKET connect: a SOCK_SEQPACKET socket to {@code path}. A UNIX connect ends at once, so
     * the guest hears RESPONSE or RST now; a stream listener there refuses the type (EPROTOTYPE).
     */
    private void requestSeqpacket(int localPort, int peerPort, Path path) {
        int fd;
        try {
            fd = Libc.unixConnect(path, Libc.SOCK_SEQPACKET);
        } catch (NativeCallException | IllegalArgumentException e) {
            table.stats.refused++;
            LOG.log(System.Logger.Level.DEBUG, "{0}: guest port {1} -> {2} (SEQPACKET): {3}; RST", table.name(),
                    Integer.toUnsignedString(peerPort), path, e.getMessage());
            table.queueReset(localPort, peerPort, TYPE_SEQPACKET);
            return;
        }
        VsockConnection connection = new VsockConnection(localPort, peerPort, fd, config.txBufferSize());
        table.add(connection);
        takeCredit(connection);
        try {
            table.register(connection, SelectionKey.OP_READ);
        } catch (IOException | RuntimeException e) {
            table.reset(connection, "watching the SEQPACKET socket: " + e);
            return;
        }
        table.send(connection, VsockConnection.SEND_RESPONSE);
    }

    /** The guest accepted a host-initiated connection: tell the host {@code OK <port>}, then carry data. */
    private void response(VsockConnection connection) {
        if (connection.state != VsockConnection.State.REQUEST_SENT) {
            malformed(header.describe() + ": RESPONSE on a connection in state " + connection.state + "; RST");
            table.reset(connection, "unexpected RESPONSE");
            return;
        }
        connection.state = VsockConnection.State.ESTABLISHED;
        connection.deadline = 0;
        // Not counted in any credit: the guest never sent these bytes.
        ByteBuffer ok = ByteBuffer.wrap(("OK " + Integer.toUnsignedString(connection.localPort) + "\n")
                .getBytes(StandardCharsets.US_ASCII));
        try {
            connection.host.write(ok);
        } catch (IOException e) {
            table.reset(connection, "writing OK to the host: " + e);
            return;
        }
        if (ok.hasRemaining()) {
            // A fresh socket's send buffer holds far more than 16 bytes; short here means it is broken.
            table.reset(connection, "the host socket took only part of the OK line");
            return;
        }
        table.interest(connection, SelectionKey.OP_READ, false);
        table.offerRx(connection);
    }

    private void shutdown(VsockConnection connection, int flags) {
        if ((flags & SHUTDOWN_RCV) != 0 && !connection.guestShutdownRcv) {
            connection.guestShutdownRcv = true;
            table.interest(connection, connection.interest & ~SelectionKey.OP_READ, false);
        }
        if ((flags & SHUTDOWN_SEND) != 0) {
            if (connection.messages != null && connection.messages.assembling() > 0) {
                malformed(header.describe() + ": SHUTDOWN(SEND) in the middle of a message; its "
                        + connection.messages.assembling() + " bytes are dropped");
                // The guest sends nothing more, so its credit no longer matters.
                connection.messages.dropAssembling();
            }
            connection.guestShutdownSend = true;
            table.shutHostOutputIfDue(connection);
        }
        table.closeIfFinished(connection);
    }

    private void data(VsockConnection connection, int len) {
        if (connection.state != VsockConnection.State.ESTABLISHED || connection.guestShutdownSend) {
            String why = connection.guestShutdownSend ? "RW after SHUTDOWN(SEND)" : "RW before the connection is open";
            malformed(header.describe() + ": " + why + "; RST");
            table.reset(connection, why);
            return;
        }
        if (connection.seqpacket()) {
            message(connection, len, (header.flags() & SEQ_EOM) != 0);
            return;
        }
        if (len == 0) {
            return;
        }
        if ((long) connection.backlogSize() + len > connection.bufAlloc) {
            malformed(header.describe() + ": the guest sent past its credit (" + connection.backlogSize()
                    + " bytes wait, buf_alloc " + connection.bufAlloc + "); RST");
            table.reset(connection, "credit exceeded");
            return;
        }
        reader.read(stagingSegment, 0, len);
        int written = 0;
        if (connection.backlogSize() == 0) {
            staging.clear().limit(len);
            try {
                written = connection.host.write(staging);
            } catch (IOException e) {
                table.reset(connection, "writing to the host: " + e);
                return;
            }
            table.forwarded(connection, written);
        }
        if (written < len) {
            if (connection.backlog == null) {
                connection.backlog = new TxBacklog(connection.bufAlloc);
            }
            connection.backlog.append(stagingSegment, written, len - written);
            table.interest(connection, connection.interest | SelectionKey.OP_WRITE, false);
        }
    }

    /**
     * An RW packet of a SEQPACKET connection: part of a message, or its end ({@code eom}). A complete
     * message goes to the host as one record: straight from the packet when it is all in this packet
     * and nothing waits before it, else from the connection's {@link SeqpacketBacklog}. A record the
     * socket cannot take now stays whole in the backlog; fwd_cnt counts its bytes once it is sent.
     * EOR is not passed on: AF_UNIX has one kind of boundary, and every record is a whole message.
     */
    private void message(VsockConnection connection, int len, boolean eom) {
        SeqpacketBacklog backlog = connection.messages;
        int assembling = backlog == null ? 0 : backlog.assembling();
        if ((long) assembling + len > connection.bufAlloc) {
            malformed(header.describe() + ": a SEQPACKET message of more than buf_alloc " + connection.bufAlloc
                    + " bytes (" + assembling + " so far); RST");
            table.reset(connection, "message larger than buf_alloc");
            return;
        }
        if ((long) connection.backlogSize() + len > connection.bufAlloc) {
            malformed(header.describe() + ": the guest sent past its credit (" + connection.backlogSize()
                    + " bytes wait, buf_alloc " + connection.bufAlloc + "); RST");
            table.reset(connection, "credit exceeded");
            return;
        }
        if (len == 0 && assembling == 0) {
            if (eom) {
                // Linux never sends an empty message; an empty record would read as end of file on the host.
                dropped(header.describe() + ": an empty SEQPACKET message");
            }
            return;
        }
        reader.read(stagingSegment, 0, len);
        if (eom && connection.backlogSize() == 0) {
            long sent;
            try {
                sent = Libc.send(connection.fd, stagingSegment, 0, len, Libc.MSG_DONTWAIT);
            } catch (NativeCallException e) {
                table.reset(connection, "sending a record to the host: " + e.getMessage());
                return;
            }
            if (sent >= 0) {
                table.forwarded(connection, len);
                table.stats.messagesGuestToHost++;
                return;
            }
        }
        if (backlog == null) {
            backlog = connection.messages = new SeqpacketBacklog(connection.bufAlloc);
        }
        backlog.append(stagingSegment, 0, len);
        if (!eom && connection.fwdCnt != connection.lastSentFwdCnt) {
            // The guest may need exactly the credit that forwards since the last report freed to end this message.
            table.send(connection, VsockConnection.SEND_CREDIT_UPDATE);
        }
        if (eom) {
            backlog.endMessage();
            table.stats.messagesGuestToHost++;
            if ((connection.interest & SelectionKey.OP_WRITE) == 0) {
                table.seqpacket.flush(connection);
            }
        }
    }

    private void malformed(String what) {
        table.stats.malformed++;
        table.warnings.warn("malformed guest packet: " + what);
    }

    private void dropped(String what) {
        table.stats.dropped++;
        table.warnings.warn("dropped guest packet: " + what);
    }

    private static void closeQuietly(SocketChannel channel) {
        if (channel != null) {
            try {
                channel.close();
            } catch (IOException ignored) {
                // Nothing was registered with it; the fd is released either way.
            }
        }
    }
}
