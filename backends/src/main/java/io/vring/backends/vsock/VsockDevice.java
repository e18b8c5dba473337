package io.vring.backends.vsock;

import io.vring.engine.DeviceQueue;
import io.vring.engine.VirtioFeatures;
import io.vring.protocol.Backend;
import io.vring.protocol.RingHandle;
import io.vring.protocol.VhostUserError;
import io.vring.protocol.VhostUserException;
import io.vring.protocol.message.ProtocolFeatures;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.concurrent.TimeUnit;

/**
 * A vhost-user-vsock device (virtio device 19) for one VM, with the host side of Firecracker's and
 * vhost-device-vsock's hybrid model: host programs connect to {@code <uds-path>} and write
 * {@code CONNECT <port>\n}; a guest connecting to CID 2 port P reaches a listener on
 * {@code <uds-path>_P}.
 *
 * <p><b>Queues.</b> 0 rx (device to guest), 1 tx (guest to device), 2 event. QEMU keeps the event
 * queue and hands over only rx and tx; crosvm hands over all three. The device never writes an event
 * (TRANSPORT_RESET is for migration, which it does not do), so the event queue's buffers stay posted.
 *
 * <p><b>Threads.</b> The tx ring's worker applies guest packets ({@link TxProcessor}), the rx ring's
 * worker fills guest buffers ({@link RxProcessor}) and one host thread per VM watches the host
 * sockets ({@link HostSide}); no thread per connection. They share a {@link ConnectionTable} under
 * one lock. Host sockets are non-blocking; the host thread wakes the rx ring with
 * {@link RingHandle#wakeUp()}.
 *
 * <p><b>Sibling VMs.</b> Devices opened with the same {@link Siblings} (one {@code ./vring vsock}
 * process with several {@code --vm}) pass packets between their guests when the VMs share a group,
 * as vhost-device-vsock's {@code --groups} does: a guest connects to another guest's CID directly.
 *
 * <p><b>SEQPACKET</b> (feature bit 1, offered; used when the guest acks it, else a SEQPACKET REQUEST
 * gets RST). A guest SEQPACKET connect to CID 2 port P connects an AF_UNIX SOCK_SEQPACKET socket to
 * {@code <uds-path>_P} ({@link SeqpacketHost}); a stream listener there refuses the type and the guest
 * gets RST at once. A guest message (RW packets up to the one with EOM) becomes one host record; a
 * host record becomes one guest message over as many rx buffers and credit windows as it needs, EOM
 * and EOR on its last packet. AF_UNIX has one kind of boundary, so the guest's EOR is not passed on
 * and every host record arrives as a whole record. Messages are at most {@code --tx-buffer-size}
 * bytes toward the host (the device's buf_alloc; a longer one is RST) and host records at most
 * 256 KiB and the guest's buf_alloc (else RST: the guest could never read it). Empty messages are
 * dropped both ways (Linux never sends one; on the host it would read as end of file). A record the
 * host socket can never take (longer than its send buffer, about 208 KiB by default: only with a
 * larger {@code --tx-buffer-size}) resets the connection. Each SEQPACKET connection holds, once
 * used, a 256 KiB buffer for the host record being delivered and, under backpressure, a backlog of
 * {@code --tx-buffer-size} bytes. SEQPACKET is
 * guest-initiated only: the hybrid {@code CONNECT} handshake is a stream, so host programs cannot open
 * a SEQPACKET connection to the guest.
 *
 * <p><b>Not offered.</b> INFLIGHT_SHMFD: a byte stream cannot be replayed.
 */
public final class VsockDevice implements Backend, AutoCloseable {
    private static final System.Logger LOG = System.getLogger(VsockDevice.class.getName());

    public static final int RX_QUEUE = 0, TX_QUEUE = 1, EVENT_QUEUE = 2;
    /** Device feature bit: SOCK_SEQPACKET. */
    public static final int F_SEQPACKET = 1;
    /** DEVICE_STATE layout: le32 magic "VSV1", le32 version, le64 guest CID. */
    private static final int STATE_MAGIC = 0x31565356, STATE_VERSION = 1, STATE_SIZE = 16;
    /** Config space: {@code le64 guest_cid}. */
    public static final int CONFIG_SIZE = 8;
    /**
     * Connections one VM may have open (each holds a host socket and, under backpressure, a backlog
     * of --tx-buffer-size bytes): a guest cannot exhaust the process's fds. More are refused with RST.
     */
    public static final int MAX_CONNECTIONS = 4096;
    /** An unanswered REQUEST (either way) is reset after this, as Firecracker does. */
    static final long CONNECT_TIMEOUT_NANOS = TimeUnit.SECONDS.toNanos(2);
    /** A connection the guest closed both ways whose backlog cannot drain is reset after this. */
    static final long CLOSE_TIMEOUT_NANOS = TimeUnit.SECONDS.toNanos(2);

    private final VsockConfig config;
    private final ConnectionTable table;
    private final TxProcessor tx;
    private final RxProcessor rx;
    private final HostSide host;
    private final SiblingInbox inbox = new SiblingInbox();
    private final Siblings siblings;
    /**
     * Where the tx ring stood when it last stopped, or -1. QEMU 7.2 stops the rings when the guest's
     * driver goes away (unbind, module unload, a guest reboot) and sends no reset; the guest drops its
     * sockets without a packet. A ring that comes back somewhere else than it stopped is a driver that
     * started over, so every connection of the old one ends then (guarded by the table's lock).
     */
    private int txStoppedAt = -1;
    private boolean closed;

    private VsockDevice(VsockConfig config, ConnectionTable table, HostSide host, Siblings siblings) {
        this.config = config;
        this.table = table;
        this.siblings = siblings;
        this.tx = new TxProcessor(table, config, siblings, inbox);
        this.rx = new RxProcessor(table, inbox, config.guestCid());
        this.host = host;
    }

    /** Binds {@code <uds-path>} and starts the VM's host thread; a VM with no siblings. */
    public static VsockDevice open(VsockConfig config) throws IOException {
        return open(config, null, MAX_CONNECTIONS);
    }

    /** As {@link #open(VsockConfig)}, reachable from (and reaching) the other guests of {@code siblings}. */
    public static VsockDevice open(VsockConfig config, Siblings siblings) throws IOException {
        return open(config, siblings, MAX_CONNECTIONS);
    }

    /** As {@link #open(VsockConfig, Siblings)} with at most {@code maxConnections} open at once. */
    static VsockDevice open(VsockConfig config, Siblings siblings, int maxConnections) throws IOException {
        ConnectionTable table = new ConnectionTable("vsock cid " + config.guestCid(), maxConnections);
        VsockDevice device = new VsockDevice(config, table, HostSide.open(table, config), siblings);
        if (siblings != null) {
            try {
                siblings.join(device);
            } catch (RuntimeException e) {
                device.close();
                throw e;
            }
        }
        return device;
    }

    public VsockConfig config() {
        return config;
    }

    @Override
    public long features() {
        return VirtioFeatures.RING_FEATURES | 1L << F_SEQPACKET;
    }

    @Override
    public long protocolFeatures() {
        return 1L << ProtocolFeatures.CONFIG | 1L << ProtocolFeatures.DEVICE_STATE;
    }

    /**
     * DEVICE_STATE (a move to another back-end process, e.g. QEMU's migration or an upgrade): the
     * guest CID it belongs to, and nothing of the connections, whose host sockets cannot leave this
     * process. The destination starts with none; the guest's old sockets get an RST on their next
     * packet, or sooner from the TRANSPORT_RESET event QEMU sends on its own event queue after a
     * migration. The source keeps its connections in case the move fails and the VM resumes here.
     */
    @Override
    public byte[] saveState() {
        synchronized (table.lock) {
            LOG.log(System.Logger.Level.INFO, "{0}: state saved; its {1} open connection(s) stay with this process",
                    table.name(), table.open());
        }
        return ByteBuffer.allocate(STATE_SIZE).order(ByteOrder.LITTLE_ENDIAN).putInt(STATE_MAGIC)
                .putInt(STATE_VERSION).putLong(config.guestCid()).array();
    }

    /** Takes a state {@link #saveState()} wrote for this guest CID; refuses any other (InvalidParam). */
    @Override
    public void loadState(byte[] state) {
        ByteBuffer b = ByteBuffer.wrap(state).order(ByteOrder.LITTLE_ENDIAN);
        if (state.length != STATE_SIZE || b.getInt(0) != STATE_MAGIC || b.getInt(4) != STATE_VERSION) {
            throw new VhostUserException(VhostUserError.InvalidParam, "not a vring vsock device state (version "
                    + STATE_VERSION + ", " + STATE_SIZE + " bytes): " + state.length + " bytes");
        }
        long cid = b.getLong(8);
        if (cid != config.guestCid()) {
            throw new VhostUserException(VhostUserError.InvalidParam, "the state is of guest CID "
                    + Long.toUnsignedString(cid) + "; this device serves CID " + config.guestCid());
        }
        synchronized (table.lock) {
            LOG.log(System.Logger.Level.INFO, "{0}: state loaded; {1} connection(s) of this process closed",
                    table.name(), forgetEverything());
        }
    }

    @Override
    public int queueCount() {
        return 3;
    }

    @Override
    public int maxQueueSize() {
        return config.queueSize();
    }

    @Override
    public int configSize() {
        return CONFIG_SIZE;
    }

    @Override
    public void readConfig(int offset, byte[] dst) {
        for (int i = 0; i < dst.length; i++) {
            dst[i] = (byte) (config.guestCid() >>> (8 * (offset + i)));
        }
    }

    @Override
    public void featuresAcked(long features) {
        tx.seqpacket(VirtioFeatures.has(features, F_SEQPACKET));
    }

    @Override
    public void start(int queueIndex, DeviceQueue queue, RingHandle handle) {
        if (queueIndex == RX_QUEUE) {
            synchronized (table.lock) {
                rx.forget();
                table.rxHandle(handle);
            }
            handle.wakeUp();
        } else if (queueIndex == TX_QUEUE) {
            tx.handle(handle);
            synchronized (table.lock) {
                if (txStoppedAt >= 0 && ((queue.availPosition() ^ txStoppedAt) & 0xFFFF) != 0) {
                    int ended = table.clear();
                    inbox.clear();
                    LOG.log(System.Logger.Level.INFO, "{0}: the tx ring restarts at {1,number,#} but stopped at {2,number,#}: the guest''s"
                            + " driver started over; {3} connection(s) of the old one closed", table.name(),
                            queue.availPosition(), txStoppedAt, ended);
                }
                txStoppedAt = -1;
            }
        }
    }

    @Override
    public int process(int queueIndex, DeviceQueue queue) {
        return switch (queueIndex) {
            case RX_QUEUE -> rx.process(queue);
            case TX_QUEUE -> tx.process(queue);
            default -> 0;
        };
    }

    @Override
    public void stop(int queueIndex, DeviceQueue queue) {
        if (queueIndex == RX_QUEUE) {
            synchronized (table.lock) {
                table.rxHandle(null);
                rx.stop(queue);
            }
        } else if (queueIndex == TX_QUEUE) {
            tx.stop(queue);
            tx.handle(null);
            synchronized (table.lock) {
                txStoppedAt = queue.availPosition() & 0xFFFF;
            }
        }
    }

    /** The driver is gone or reset: every connection ends and its host socket is closed. */
    @Override
    public void reset() {
        synchronized (table.lock) {
            LOG.log(System.Logger.Level.INFO, "{0}: device reset, {1} connection(s) closed", table.name(),
                    forgetEverything());
        }
    }

    /**
     * Closes every connection and forgets every packet and ring position of the driver that was: the
     * device is as a fresh one. Under the table's lock; returns how many connections were open.
     */
    private int forgetEverything() {
        int closed = table.clear();
        rx.forget();
        inbox.clear();
        txStoppedAt = -1;
        return closed;
    }

    /** Whether this guest's driver runs its rx ring: packets from siblings can be delivered. */
    boolean guestDriverRunning() {
        return table.rxRunning();
    }

    SiblingInbox inbox() {
        return inbox;
    }

    /** A sibling queued a packet for this guest. */
    void wakeRx() {
        table.wakeRxNow();
    }

    /** This VM's counters and open connections now. */
    public VsockStats.Snapshot stats() {
        synchronized (table.lock) {
            return table.stats.snapshot(table.open());
        }
    }

    /** Stops the host thread, closes every host socket and the listener, and removes {@code <uds-path>}. */
    @Override
    public void close() {
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
        }
        if (siblings != null) {
            siblings.leave(this);
        }
        host.close();
        reset();
        table.seqpacket.close();
    }
}
