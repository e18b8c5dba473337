package io.vring.backends.vsock;

import io.vring.protocol.RingHandle;
import org.agrona.collections.IntHashSet;
import org.agrona.collections.Long2ObjectHashMap;

import java.io.IOException;
import java.nio.channels.CancelledKeyException;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;

/**
 * The state three threads share: the tx ring's worker (guest packets), the rx ring's worker (packets
 * to the guest) and the host-socket thread. One lock guards all of it; each holder does a bounded
 * amount of non-blocking work (one packet, one socket read or write) before letting go.
 *
 * <p>Holds the connections by (local port, peer port), the connections waiting for an rx buffer
 * (FIFO, each at most once), the RSTs waiting for one (they name a port pair, not a connection,
 * since the connection is already gone), and the host-side ports handed out to host-initiated
 * connections.
 */
final class ConnectionTable {
    private static final System.Logger LOG = System.getLogger(ConnectionTable.class.getName());
    /** RSTs that may wait for rx buffers; more are dropped (the guest times out instead). */
    private static final int MAX_PENDING_RESETS = 4096;
    /** Host-initiated connections use local ports in [2^30, 2^31), as Firecracker does. */
    private static final int FIRST_HOST_PORT = 1 << 30;

    /**
     * The monitor every holder synchronizes on. A monitor rather than a ReentrantLock: under
     * contention (three threads) the AQS queue allocates a node per wait, a monitor does not.
     */
    final Object lock = new Object();
    final VsockStats stats = new VsockStats();
    final GuestWarnings warnings;
    private final String name;
    private final int maxConnections;
    private final Long2ObjectHashMap<VsockConnection> connections = new Long2ObjectHashMap<>();
    private final IntHashSet hostPorts = new IntHashSet();
    private final ArrayDeque<VsockConnection> rxWaiting = new ArrayDeque<>();
    private final int[] resets = new int[MAX_PENDING_RESETS * 3];
    private int resetHead;
    private int resetCount;
    private int lastHostPort = FIRST_HOST_PORT - 1;
    private final List<VsockConnection> sweep = new ArrayList<>();

    private volatile RingHandle rx;
    private Selector selector;
    /** Watches the SEQPACKET host sockets; its thread starts with the first one. */
    final SeqpacketHost seqpacket = new SeqpacketHost(this);
    private boolean rxWakeNeeded;

    ConnectionTable(String name, int maxConnections) {
        this.name = name;
        this.maxConnections = maxConnections;
        this.warnings = new GuestWarnings(LOG, name);
    }

    void selector(Selector selector) {
        this.selector = selector;
    }

    /** The rx ring's handle while it runs, else null. */
    void rxHandle(RingHandle handle) {
        this.rx = handle;
    }

    boolean rxRunning() {
        return rx != null;
    }

    int maxConnections() {
        return maxConnections;
    }

    VsockConnection get(int localPort, int peerPort) {
        return connections.get(VsockConnection.key(localPort, peerPort));
    }

    int open() {
        return connections.size();
    }

    /** Whether another connection may open; if not, says so (rate-limited) and counts the refusal. */
    boolean roomFor(String who) {
        if (connections.size() < maxConnections) {
            return true;
        }
        stats.refused++;
        warnings.warn(maxConnections + " connections are open; refusing " + who);
        return false;
    }

    void add(VsockConnection connection) {
        connections.put(connection.key(), connection);
        if (connection.hostInitiated) {
            hostPorts.add(connection.localPort);
            stats.hostConnections++;
        } else {
            stats.guestConnections++;
        }
    }

    /** A free host-side port for a host-initiated connection, or -1 if all 2^30 are taken. */
    int allocateHostPort() {
        for (int tries = 0; tries < FIRST_HOST_PORT; tries++) {
            int candidate = lastHostPort + 1;
            // Past 2^31 - 1 the int wraps negative: start the range again.
            lastHostPort = candidate < FIRST_HOST_PORT ? FIRST_HOST_PORT : candidate;
            if (!hostPorts.contains(lastHostPort)) {
                return lastHostPort;
            }
        }
        return -1;
    }

    /** Marks packets for the guest and queues the connection for an rx buffer. */
    void send(VsockConnection connection, int packetBits) {
        connection.pending |= packetBits;
        offerRx(connection);
    }

    /** Queues the connection for an rx buffer if it has something to send and is not queued yet. */
    void offerRx(VsockConnection connection) {
        if (!connection.queued && connection.wantsRx()) {
            connection.queued = true;
            rxWaiting.addLast(connection);
            rxWakeNeeded = true;
        }
    }

    /** The next connection waiting for an rx buffer, or null. */
    VsockConnection pollRx() {
        VsockConnection next = rxWaiting.pollFirst();
        if (next != null) {
            next.queued = false;
        }
        return next;
    }

    int rxWaitingCount() {
        return rxWaiting.size();
    }

    /** Queues an RST from host port {@code localPort} to guest port {@code peerPort}. */
    void queueReset(int localPort, int peerPort, int type) {
        if (resetCount == MAX_PENDING_RESETS) {
            stats.dropped++;
            warnings.warn(MAX_PENDING_RESETS + " RSTs wait for rx buffers; dropping the RST to guest port "
                    + Integer.toUnsignedString(peerPort));
            return;
        }
        int slot = ((resetHead + resetCount) % MAX_PENDING_RESETS) * 3;
        resets[slot] = localPort;
        resets[slot + 1] = peerPort;
        resets[slot + 2] = type;
        resetCount++;
        stats.resetsSent++;
        rxWakeNeeded = true;
    }

    boolean hasReset() {
        return resetCount > 0;
    }

    /** Takes the oldest queued RST into {@code out} (local port, peer port, type). */
    void takeReset(int[] out) {
        int slot = resetHead * 3;
        out[0] = resets[slot];
        out[1] = resets[slot + 1];
        out[2] = resets[slot + 2];
        resetHead = (resetHead + 1) % MAX_PENDING_RESETS;
        resetCount--;
    }

    boolean rxHasWork() {
        return resetCount > 0 || !rxWaiting.isEmpty();
    }

    /** Wakes the rx worker if something was queued for it since the last call. Under the lock. */
    void wakeRxIfQueued() {
        if (rxWakeNeeded) {
            rxWakeNeeded = false;
            RingHandle handle = rx;
            if (handle != null) {
                handle.wakeUp();
            }
        }
    }

    /** Wakes the rx worker now, without the lock: a sibling put a packet in this VM's inbox. */
    void wakeRxNow() {
        RingHandle handle = rx;
        if (handle != null) {
            handle.wakeUp();
        }
    }

    /** Device-initiated reset: the host socket is closed and the guest gets an RST. */
    void reset(VsockConnection connection, String why) {
        LOG.log(System.Logger.Level.DEBUG, "{0}: {1} reset: {2}", name, connection.name(), why);
        if (connection.state != VsockConnection.State.CLOSED) {
            close(connection);
            queueReset(connection.localPort, connection.peerPort, connection.type);
        }
    }

    /** Forgets the connection and closes its host socket; no packet goes to the guest. */
    void close(VsockConnection connection) {
        if (connection.state == VsockConnection.State.CLOSED) {
            return;
        }
        connection.state = VsockConnection.State.CLOSED;
        connections.remove(connection.key());
        if (connection.hostInitiated) {
            hostPorts.remove(connection.localPort);
        }
        closeQuietly(connection);
    }

    /** Registers the connection's host socket with the selector, watching {@code ops}. */
    void register(VsockConnection connection, int ops) throws IOException {
        connection.interest = ops;
        if (connection.seqpacket()) {
            seqpacket.add(connection);
            return;
        }
        connection.key = connection.host.register(selector, ops, connection);
        selector.wakeup();
    }

    /** Watches the host socket for {@code ops}; from a thread other than the selector's, wakes the selector. */
    void interest(VsockConnection connection, int ops, boolean onSelectorThread) {
        if (connection.interest == ops || connection.state == VsockConnection.State.CLOSED) {
            return;
        }
        connection.interest = ops;
        if (connection.seqpacket()) {
            if (!onSelectorThread) {
                seqpacket.wake();
            }
            return;
        }
        SelectionKey key = connection.key;
        if (key == null) {
            return;
        }
        try {
            key.interestOps(ops);
        } catch (CancelledKeyException e) {
            return;
        }
        if (!onSelectorThread) {
            selector.wakeup();
        }
    }

    /**
     * {@code bytes} guest-to-host bytes reached the host socket: they count in fwd_cnt. Once the
     * guest's view of our free space is a quarter of buf_alloc behind, a CREDIT_UPDATE is queued;
     * a guest that ran out of credit has sent buf_alloc bytes past the last update, so it always
     * gets one (any packet to the guest carries the credit too).
     *
     * <p>While a SEQPACKET message is half sent, every forwarded byte is reported at once: its bytes
     * so far stay here until its end comes, so the guest may need just the few bytes that left to
     * finish it, and a quarter of buf_alloc might never be forwarded.
     */
    void forwarded(VsockConnection connection, int bytes) {
        if (bytes <= 0) {
            return;
        }
        connection.fwdCnt += bytes;
        stats.bytesGuestToHost += bytes;
        long unreported = Integer.toUnsignedLong(connection.fwdCnt - connection.lastSentFwdCnt);
        if (unreported >= Math.max(1, connection.bufAlloc / 4) || connection.awaitsMessageEnd()) {
            send(connection, VsockConnection.SEND_CREDIT_UPDATE);
        }
    }

    /** Half-close toward the host once the guest sent SHUTDOWN(SEND) and the backlog is written. */
    void shutHostOutputIfDue(VsockConnection connection) {
        if (connection.guestShutdownSend && !connection.hostOutputShut && connection.backlogSize() == 0
                && connection.state == VsockConnection.State.ESTABLISHED) {
            connection.hostOutputShut = true;
            try {
                if (connection.seqpacket()) {
                    io.vring.engine.os.Libc.shutdown(connection.fd, io.vring.engine.os.Libc.SHUT_WR);
                } else {
                    connection.host.shutdownOutput();
                }
            } catch (IOException | RuntimeException e) {
                LOG.log(System.Logger.Level.DEBUG, "{0}: {1} shutdown(SHUT_WR): {2}", name, connection.name(), e.toString());
            }
        }
    }

    /**
     * Ends a connection the guest closed both ways (SHUTDOWN with RCV and SEND, what Linux sends on
     * close()) once the backlog is written: the guest gets the final RST. If the backlog cannot drain
     * the connection is reset after two seconds. A host EOF alone only half-closes (SHUTDOWN(SEND) to
     * the guest): the guest may still be reading what came before it, and its close ends the connection.
     */
    void closeIfFinished(VsockConnection connection) {
        if (connection.state == VsockConnection.State.CLOSED || !connection.guestShutdownSend
                || !connection.guestShutdownRcv) {
            return;
        }
        if (connection.backlogSize() == 0) {
            reset(connection, "the guest closed both directions");
        } else if (connection.deadline == 0) {
            connection.deadline = System.nanoTime() + VsockDevice.CLOSE_TIMEOUT_NANOS;
        }
    }

    /** Every open connection, copied so the caller may close them while walking the list. */
    List<VsockConnection> snapshot() {
        sweep.clear();
        connections.values().forEach(sweep::add);
        return sweep;
    }

    /** Drops every connection and queued packet (device reset): every host socket is closed. */
    int clear() {
        List<VsockConnection> all = new ArrayList<>(connections.values());
        for (VsockConnection connection : all) {
            close(connection);
        }
        rxWaiting.clear();
        resetHead = 0;
        resetCount = 0;
        return all.size();
    }

    String name() {
        return name;
    }

    private void closeQuietly(VsockConnection connection) {
        if (connection.seqpacket()) {
            seqpacket.remove(connection);
            try {
                io.vring.engine.os.Libc.close(connection.fd);
            } catch (RuntimeException e) {
                LOG.log(System.Logger.Level.DEBUG, "{0}: closing {1}: {2}", name, connection.name(), e.toString());
            }
            return;
        }
        if (connection.key != null) {
            connection.key.cancel();
        }
        try {
            connection.host.close();
        } catch (IOException e) {
            LOG.log(System.Logger.Level.DEBUG, "{0}: closing {1}: {2}", name, connection.name(), e.toString());
        }
    }
}
