package io.vring.protocol;

import io.vring.protocol.message.DeviceConfig;
import io.vring.protocol.message.DeviceStateTransfer;
import io.vring.engine.memory.SharedMemory;
import io.vring.protocol.message.FrontendRequest;
import io.vring.protocol.message.InflightDescription;
import io.vring.protocol.message.LogDescription;
import io.vring.protocol.message.MemoryRegion;
import io.vring.protocol.message.MemoryTable;
import io.vring.protocol.message.Payload;
import io.vring.protocol.message.ProtocolFeatures;
import io.vring.protocol.message.SingleMemoryRegion;
import io.vring.protocol.message.U64Payload;
import io.vring.protocol.message.VringAddress;
import io.vring.protocol.message.VringFdPayload;
import io.vring.protocol.message.VringState;

import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The front-end's handle on one vhost-user back-end (ours, DPDK's {@code net_vhost}, a
 * vhost-device daemon): one method per front-end request, as QEMU or DPDK virtio-user send them.
 * {@link FrontendDevice} runs the whole start sequence on top of it.
 *
 * <p><b>Replies.</b> A request that always has a reply (GET_*, GET_VRING_BASE, SET_DEVICE_STATE_FD,
 * ...) waits for it; any other request is sent with NEED_REPLY once REPLY_ACK is negotiated and
 * waits for its u64 ack, so a method returns only after the back-end has applied the change.
 * Without REPLY_ACK the request is fire-and-forget and {@link #barrier()} (a GET_FEATURES round
 * trip, as QEMU does) is how a caller knows it was processed. A reply must carry the request's code,
 * flags exactly {@code 0x5}, the size and fd count its request allows; anything else is
 * InvalidMessage or IncorrectFds. A non-zero ack is {@link VhostUserError#BackendInternalError}.
 *
 * <p><b>Timeouts and a vanished peer.</b> Each reply is awaited at most {@link #replyTimeout()}
 * (default {@value #DEFAULT_REPLY_TIMEOUT_MILLIS} ms; GET_VRING_BASE waits for the back-end to
 * drain the ring, so give a slow device more). A peer that closes, cuts a reply short or does not
 * answer in time makes the call throw a {@link VhostUserException} whose kind says so (Disconnect,
 * PartialMessage, SocketBroken), and the client is <i>broken</i> from then on: every later call
 * throws SocketBroken with the first reason, since request and reply are matched only by order.
 * A refused request (non-zero ack) does not break the client. Closing the client from another
 * thread wakes a call that waits for a reply within 100 ms.
 *
 * <p><b>Feature gates.</b> A request that needs a protocol feature is refused here
 * ({@link VhostUserError#InvalidOperation}) unless that feature was negotiated with
 * {@link #setProtocolFeatures}, so a caller's mistake is reported before the back-end drops us.
 *
 * <p>Thread-safe: one request (and its reply) at a time.
 */
public final class BackendClient implements AutoCloseable {
    /** How long a reply is awaited unless the caller says otherwise. */
    public static final long DEFAULT_REPLY_TIMEOUT_MILLIS = 5_000;

    private static final Logger LOG = System.getLogger(BackendClient.class.getName());
    private static final long PROTOCOL_FEATURES_BIT = 1L << ProtocolFeatures.VIRTIO_PROTOCOL_FEATURES;

    private final Connection connection;
    private final long replyTimeoutMillis;
    private final Object requestLock = new Object();
    /** Virtio features from the last GET_FEATURES, -1 before the first. */
    private long offeredFeatures = -1;
    private long ackedFeatures;
    private long protocolFeatures;
    private boolean protocolFeaturesNegotiated;
    private volatile String brokenReason;

    private BackendClient(Connection connection, long replyTimeoutMillis) {
        if (replyTimeoutMillis <= 0) {
            throw new IllegalArgumentException("reply timeout must be positive, got " + replyTimeoutMillis + " ms");
        }
        this.connection = connection;
        this.replyTimeoutMillis = replyTimeoutMillis;
    }

    /** Drives the back-end on the other end of {@code connection} (which the client now owns). */
    public static BackendClient over(Connection connection, Duration replyTimeout) {
        return new BackendClient(connection, replyTimeout.toMillis());
    }

    /** Connects to a back-end listening at {@code socket} (QEMU's default role). */
    public static BackendClient connect(Path socket) {
        return connect(socket, Duration.ofMillis(DEFAULT_REPLY_TIMEOUT_MILLIS));
    }

    /** Connects to a back-end listening at {@code socket}, waiting at most {@code replyTimeout} per reply. */
    public static BackendClient connect(Path socket, Duration replyTimeout) {
        return over(Connection.connect(socket), replyTimeout);
    }

    /**
     * Connects to a back-end at {@code socket}, trying again with back-off (10 ms doubling to 500 ms)
     * while nobody listens there yet, as QEMU's {@code reconnect} option does for a back-end that is
     * restarting after a crash.
     *
     * @throws VhostUserException SocketConnect if no attempt succeeded within {@code giveUpAfter}
     */
    public static BackendClient connectWithBackoff(Path socket, Duration replyTimeout, Duration giveUpAfter) {
        long deadline = System.nanoTime() + giveUpAfter.toNanos();
        long pauseMillis = 10;
        for (int attempt = 1; ; attempt++) {
            try {
                return connect(socket, replyTimeout);
            } catch (VhostUserException e) {
                if (e.kind() != VhostUserError.SocketConnect || System.nanoTime() - deadline > 0) {
                    throw e;
                }
                LOG.log(Level.DEBUG, "attempt {0} to reach {1} failed, again in {2} ms: {3}", attempt, socket,
                        pauseMillis, e.getMessage());
            }
            try {
                Thread.sleep(pauseMillis);
            } catch (InterruptedException ie) {
                Thread.currentThread().interrupt();
                throw new VhostUserException(VhostUserError.SocketConnect, "interrupted while reconnecting to " + socket, ie);
            }
            pauseMillis = Math.min(pauseMillis * 2, 500);
        }
    }

    /**
     * Listens at {@code socket}, accepts one back-end (DPDK virtio-user's {@code server=1} role: the
     * back-end is started with {@code client=1}) and stops listening.
     *
     * @throws VhostUserException SocketConnect if no back-end connected within {@code acceptTimeout}
     */
    public static BackendClient accept(Path socket, Duration acceptTimeout, Duration replyTimeout) {
        Listener listener = Connection.listen(socket);
        CompletableFuture<Connection> accepted = new CompletableFuture<>();
        Thread acceptor = Thread.ofVirtual().name("vhost-accept " + socket).start(() -> {
            try {
                accepted.complete(listener.accept());
            } catch (Throwable t) {
                accepted.completeExceptionally(t);
            }
        });
        Connection connection = null;
        try {
            connection = accepted.get(acceptTimeout.toMillis(), TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
            throw new VhostUserException(VhostUserError.SocketConnect,
                    "no back-end connected to " + socket + " within " + acceptTimeout.toMillis() + " ms", e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new VhostUserException(VhostUserError.SocketConnect, "interrupted while waiting on " + socket, e);
        } catch (ExecutionException e) {
            throw e.getCause() instanceof VhostUserException v ? v
                    : new VhostUserException(VhostUserError.SocketConnect, "accept on " + socket + " failed: " + e.getCause(), e);
        } finally {
            listener.close(); // wakes the acceptor if it is still waiting
            joinQuietly(acceptor);
            if (connection == null && accepted.isDone() && !accepted.isCompletedExceptionally()) {
                accepted.join().close(); // connected just as the wait gave up: do not leak its socket
            }
        }
        return over(connection, replyTimeout);
    }

    // ---- negotiation -------------------------------------------------------------------------

    /** GET_FEATURES: the virtio features the back-end offers (bit 30 = it speaks protocol features). */
    public long getFeatures() {
        long features = callU64(FrontendRequest.GET_FEATURES, null);
        synchronized (requestLock) {
            offeredFeatures = features;
        }
        return features;
    }

    /**
     * SET_FEATURES. Bits the back-end did not offer are refused here (QEMU 7.2 sends them anyway; a
     * strict back-end would drop the connection). Bit 30 must be set whenever protocol features are
     * used: without it the back-end enables every ring at once and refuses SET_VRING_ENABLE.
     */
    public void setFeatures(long features) {
        long offered;
        synchronized (requestLock) {
            offered = offeredFeatures;
        }
        if (offered == -1) {
            throw new VhostUserException(VhostUserError.InvalidOperation, "SET_FEATURES before GET_FEATURES");
        }
        if ((features & ~offered) != 0) {
            throw new VhostUserException(VhostUserError.FeatureMismatch, "SET_FEATURES 0x" + Long.toHexString(features)
                    + " has bits the back-end did not offer: 0x" + Long.toHexString(features & ~offered));
        }
        call(FrontendRequest.SET_FEATURES, new U64Payload(features));
        synchronized (requestLock) {
            ackedFeatures = features;
        }
    }

    /** GET_PROTOCOL_FEATURES; needs bit 30 in the last GET_FEATURES. */
    public long getProtocolFeatures() {
        requireProtocolFeaturesOffered("GET_PROTOCOL_FEATURES");
        return callU64(FrontendRequest.GET_PROTOCOL_FEATURES, null);
    }

    /**
     * SET_PROTOCOL_FEATURES. From here on requests are gated on {@code features}, and with REPLY_ACK
     * every request without a reply of its own asks for an ack. Sent without NEED_REPLY itself, as
     * QEMU does (REPLY_ACK is not in force before the back-end has it).
     */
    public void setProtocolFeatures(long features) {
        requireProtocolFeaturesOffered("SET_PROTOCOL_FEATURES");
        if (ProtocolFeatures.has(features, ProtocolFeatures.INBAND_NOTIFICATIONS)
                && !(ProtocolFeatures.has(features, ProtocolFeatures.BACKEND_REQ)
                && ProtocolFeatures.has(features, ProtocolFeatures.REPLY_ACK))) {
            throw new VhostUserException(VhostUserError.FeatureMismatch,
                    "INBAND_NOTIFICATIONS needs BACKEND_REQ and REPLY_ACK, got " + ProtocolFeatures.describe(features));
        }
        call(FrontendRequest.SET_PROTOCOL_FEATURES, new U64Payload(features));
        synchronized (requestLock) {
            protocolFeatures = features;
            protocolFeaturesNegotiated = true;
        }
    }

    /**
     * The QEMU negotiation: GET_FEATURES, then, if bit 30 is offered, GET_PROTOCOL_FEATURES and
     * SET_PROTOCOL_FEATURES with the intersection of {@code wanted} and the offer (INBAND_NOTIFICATIONS
     * dropped unless BACKEND_REQ and REPLY_ACK are both in it).
     *
     * @return the negotiated protocol features (0 if the back-end has none)
     */
    public long negotiateProtocolFeatures(long wanted) {
        long offered = getFeatures();
        if ((offered & PROTOCOL_FEATURES_BIT) == 0) {
            LOG.log(Level.DEBUG, "back-end offers no protocol features (GET_FEATURES 0x{0})", Long.toHexString(offered));
            return 0;
        }
        long features = getProtocolFeatures() & wanted;
        if (!ProtocolFeatures.has(features, ProtocolFeatures.BACKEND_REQ) || !ProtocolFeatures.has(features, ProtocolFeatures.REPLY_ACK)) {
            features &= ~ProtocolFeatures.bit(ProtocolFeatures.INBAND_NOTIFICATIONS);
        }
        setProtocolFeatures(features);
        return features;
    }

    /** The negotiated protocol features (0 before {@link #setProtocolFeatures}). */
    public long protocolFeatures() {
        synchronized (requestLock) {
            return protocolFeatures;
        }
    }

    /** True once SET_PROTOCOL_FEATURES was sent. */
    public boolean protocolFeaturesNegotiated() {
        synchronized (requestLock) {
            return protocolFeaturesNegotiated;
        }
    }

    /** The virtio features of the last GET_FEATURES (-1 before the first). */
    public long offeredFeatures() {
        synchronized (requestLock) {
            return offeredFeatures;
        }
    }

    /** The virtio features of the last SET_FEATURES (0 before). */
    public long ackedFeatures() {
        synchronized (requestLock) {
            return ackedFeatures;
        }
    }

    /** True if {@code bit} ({@link ProtocolFeatures}) was negotiated. */
    public boolean has(int bit) {
        return ProtocolFeatures.has(protocolFeatures(), bit);
    }

    /** SET_OWNER: the session starts. */
    public void setOwner() {
        call(FrontendRequest.SET_OWNER, null);
    }

    /** RESET_OWNER (deprecated; a back-end disables its rings at most). */
    public void resetOwner() {
        call(FrontendRequest.RESET_OWNER, null);
    }

    /** GET_QUEUE_NUM (MQ): the most queues the back-end serves. */
    public int getQueueNum() {
        return (int) Math.min(Integer.MAX_VALUE, callU64(FrontendRequest.GET_QUEUE_NUM, null));
    }

    /** GET_MAX_MEM_SLOTS (CONFIGURE_MEM_SLOTS): the most memory regions the back-end maps. */
    public int getMaxMemSlots() {
        return (int) Math.min(Integer.MAX_VALUE, callU64(FrontendRequest.GET_MAX_MEM_SLOTS, null));
    }

    /** SET_BACKEND_REQ_FD (BACKEND_REQ): hands over our end's peer of the back-end channel; the fd stays the caller's. */
    public void setBackendReqFd(int socketFd) {
        call(FrontendRequest.SET_BACKEND_REQ_FD, null, socketFd);
    }

    // ---- memory ------------------------------------------------------------------------------

    /** SET_MEM_TABLE: replaces the back-end's whole table; {@code fds[i]} backs {@code regions[i]} (caller keeps them). */
    public void setMemTable(List<MemoryRegion> regions, int... fds) {
        if (fds.length != regions.size()) {
            throw new IllegalArgumentException(regions.size() + " regions but " + fds.length + " fds");
        }
        call(FrontendRequest.SET_MEM_TABLE, new MemoryTable(regions), fds);
    }

    /** ADD_MEM_REG (CONFIGURE_MEM_SLOTS): one more region, backed by {@code fd} (caller keeps it). */
    public void addMemRegion(MemoryRegion region, int fd) {
        call(FrontendRequest.ADD_MEM_REG, new SingleMemoryRegion(region), fd);
    }

    /** REM_MEM_REG (CONFIGURE_MEM_SLOTS): the back-end unmaps the region (matched on gpa, user address and size). */
    public void removeMemRegion(MemoryRegion region) {
        call(FrontendRequest.REM_MEM_REG, new SingleMemoryRegion(region));
    }

    /**
     * SET_LOG_BASE (LOG_SHMFD): the dirty-page log. Always answered (DPDK with 0 bytes, rust-vmm
     * echoing the 16), so this waits for the reply whether or not REPLY_ACK is negotiated.
     */
    public void setLogBase(LogDescription log, int fd) {
        try (Message ignored = exchange(FrontendRequest.SET_LOG_BASE, log, new int[] {fd})) {
            // QEMU ignores the reply's payload; so do we.
        }
    }

    // ---- rings -------------------------------------------------------------------------------

    /** SET_VRING_NUM: the queue size. */
    public void setVringNum(int index, int size) {
        call(FrontendRequest.SET_VRING_NUM, new VringState(index, size));
    }

    /**
     * SET_VRING_BASE: where the back-end resumes. Split: the next avail index (0 on a fresh ring).
     * Packed: avail slot | avail wrap << 15 | used slot << 16 | used wrap << 31 ({@code 0x80008000}
     * on a fresh ring: both wrap counters start at 1).
     */
    public void setVringBase(int index, int base) {
        call(FrontendRequest.SET_VRING_BASE, new VringState(index, base));
    }

    /**
     * GET_VRING_BASE: stops the ring (the back-end finishes what is in flight first) and returns its
     * base in the SET_VRING_BASE encoding.
     *
     * @throws VhostUserException InvalidMessage if the reply names another ring
     */
    public int getVringBase(int index) {
        try (Message reply = exchange(FrontendRequest.GET_VRING_BASE, new VringState(index, 0), new int[0])) {
            VringState state = VringState.decode(reply.payload());
            if (state.index() != index) {
                throw broken(new VhostUserException(VhostUserError.InvalidMessage,
                        "GET_VRING_BASE for ring " + index + " answered for ring " + state.indexUnsigned()));
            }
            return state.num();
        }
    }

    /** SET_VRING_ADDR: desc, used and avail as front-end user addresses (or GPAs with GPA_ADDRESSES). */
    public void setVringAddr(VringAddress address) {
        call(FrontendRequest.SET_VRING_ADDR, address);
    }

    /** SET_VRING_KICK with {@code eventFd}, or with the NOFD bit when it is negative: the back-end busy-polls. */
    public void setVringKick(int index, int eventFd) {
        vringFd(FrontendRequest.SET_VRING_KICK, index, eventFd);
    }

    /** SET_VRING_CALL with {@code eventFd}, or NOFD when it is negative: the back-end does not signal. */
    public void setVringCall(int index, int eventFd) {
        vringFd(FrontendRequest.SET_VRING_CALL, index, eventFd);
    }

    /** SET_VRING_ERR with {@code eventFd}, or NOFD when it is negative. */
    public void setVringErr(int index, int eventFd) {
        vringFd(FrontendRequest.SET_VRING_ERR, index, eventFd);
    }

    /** SET_VRING_ENABLE; only valid with protocol features (bit 30 in SET_FEATURES). */
    public void setVringEnable(int index, boolean enable) {
        if (!protocolFeaturesNegotiated() || (ackedFeatures() & PROTOCOL_FEATURES_BIT) == 0) {
            throw new VhostUserException(VhostUserError.InvalidOperation,
                    "SET_VRING_ENABLE needs protocol features negotiated and bit 30 in SET_FEATURES");
        }
        call(FrontendRequest.SET_VRING_ENABLE, new VringState(index, enable ? 1 : 0));
    }

    /** VRING_KICK (INBAND_NOTIFICATIONS): an in-band kick for a ring without a kick fd. */
    public void vringKick(int index) {
        call(FrontendRequest.VRING_KICK, new VringState(index, 0));
    }

    /** SET_VRING_ENDIAN (CROSS_ENDIAN): a legacy ring's byte order, before it starts. */
    public void setVringEndian(int index, boolean bigEndian) {
        call(FrontendRequest.SET_VRING_ENDIAN, new VringState(index, bigEndian ? 1 : 0));
    }

    // ---- inflight ----------------------------------------------------------------------------

    /**
     * GET_INFLIGHT_FD (INFLIGHT_SHMFD): asks the back-end for a new inflight region for
     * {@code numQueues} rings of {@code queueSize}. Its memfd is mapped here and the caller owns
     * the result; null if the back-end declines (mmap_size 0, no fd). Keep it and hand it back with
     * {@link #setInflightFd} on every start, reconnects included.
     *
     * @throws VhostUserException IncorrectFds if the fd does not match the size the reply announces
     */
    public InflightArea getInflightFd(int numQueues, int queueSize) {
        try (Message reply = exchange(FrontendRequest.GET_INFLIGHT_FD,
                new InflightDescription(0, 0, numQueues, queueSize), new int[0])) {
            InflightDescription d = InflightDescription.decode(reply.payload());
            if ((d.mmapSize() == 0) != (reply.fdCount() == 0)) {
                throw broken(new VhostUserException(VhostUserError.IncorrectFds, "GET_INFLIGHT_FD reply of mmap_size "
                        + d.mmapSize() + " came with " + reply.fdCount() + " fds"));
            }
            if (d.mmapSize() == 0) {
                return null;
            }
            int fd = reply.takeFd(0);
            try {
                return new InflightArea(d, SharedMemory.openRange(fd, d.mmapOffset(), d.mmapSize())); // owns fd, also on failure
            } catch (IllegalArgumentException e) {
                throw new VhostUserException(VhostUserError.InvalidParam, "GET_INFLIGHT_FD: " + e.getMessage(), e);
            }
        }
    }

    /** SET_INFLIGHT_FD (INFLIGHT_SHMFD): the region from {@link #getInflightFd} (the area stays the caller's). */
    public void setInflightFd(InflightArea area) {
        call(FrontendRequest.SET_INFLIGHT_FD, area.description(), area.memory().fd());
    }

    /**
     * An inflight region the back-end made: its description (sent back as is with SET_INFLIGHT_FD)
     * and our mapping of it. Closing it unmaps the region and closes the memfd.
     */
    public record InflightArea(InflightDescription description, SharedMemory memory) implements AutoCloseable {
        @Override
        public void close() {
            memory.close();
        }
    }

    // ---- net ---------------------------------------------------------------------------------

    /** NET_SET_MTU (MTU): with REPLY_ACK the back-end's ack says whether it accepts the MTU. */
    public void netSetMtu(int mtu) {
        call(FrontendRequest.NET_SET_MTU, new U64Payload(Integer.toUnsignedLong(mtu)));
    }

    /** SEND_RARP (RARP): the back-end announces {@code mac} (6 bytes) after a migration. */
    public void sendRarp(byte[] mac) {
        if (mac.length != 6) {
            throw new IllegalArgumentException("a MAC address has 6 bytes, got " + mac.length);
        }
        long value = 0;
        for (int i = 0; i < 6; i++) {
            value |= (mac[i] & 0xFFL) << (8 * i);
        }
        call(FrontendRequest.SEND_RARP, new U64Payload(value));
    }

    // ---- device ------------------------------------------------------------------------------

    /**
     * GET_CONFIG (CONFIG): {@code length} bytes of config space at {@code offset}.
     *
     * @throws VhostUserException BackendInternalError if the back-end answers with no bytes (its
     *                            error signal); InvalidMessage if it answers another offset or size
     */
    public byte[] getConfig(int offset, int length) {
        try (Message reply = exchange(FrontendRequest.GET_CONFIG, DeviceConfig.request(offset, length), new int[0])) {
            DeviceConfig config = DeviceConfig.decode(reply.payload());
            if (config.length() == 0 && length != 0) {
                throw new VhostUserException(VhostUserError.BackendInternalError,
                        "GET_CONFIG of " + length + " bytes at " + offset + " refused (empty reply)");
            }
            if (config.length() != length || config.offset() != offset) {
                throw broken(new VhostUserException(VhostUserError.InvalidMessage, "GET_CONFIG of " + length + " bytes at "
                        + offset + " answered with " + config.length() + " bytes at " + config.offset()));
            }
            return config.data();
        }
    }

    /** SET_CONFIG (CONFIG): a front-end write ({@link DeviceConfig#FLAG_FRONTEND}) or a migration write. */
    public void setConfig(int offset, byte[] data, int flags) {
        call(FrontendRequest.SET_CONFIG, new DeviceConfig(offset, flags, data));
    }

    /** SET_STATUS (STATUS): the virtio device status byte. */
    public void setStatus(int status) {
        call(FrontendRequest.SET_STATUS, new U64Payload(Integer.toUnsignedLong(status)));
    }

    /** GET_STATUS (STATUS). */
    public int getStatus() {
        return (int) callU64(FrontendRequest.GET_STATUS, null);
    }

    /** RESET_DEVICE (RESET_DEVICE): rings disabled, device state reset, ownership and features kept. */
    public void resetDevice() {
        call(FrontendRequest.RESET_DEVICE, null);
    }

    /**
     * DEVICE_STATE save: the back-end writes its state into a pipe, then CHECK_DEVICE_STATE. Every
     * ring must be stopped (GET_VRING_BASE) first.
     *
     * @throws VhostUserException BackendInternalError if the back-end refuses or CHECK_DEVICE_STATE fails
     */
    public byte[] saveDeviceState() {
        synchronized (requestLock) {
            try (DeviceStatePipe pipe = DeviceStatePipe.open(DeviceStateTransfer.SAVE, replyTimeoutMillis)) {
                pipe.start(this);
                byte[] state = pipe.readAll();
                checkDeviceState();
                return state;
            }
        }
    }

    /**
     * DEVICE_STATE load: the back-end reads {@code state} from a pipe we write and close, then
     * CHECK_DEVICE_STATE. Before any ring starts.
     */
    public void loadDeviceState(byte[] state) {
        synchronized (requestLock) {
            try (DeviceStatePipe pipe = DeviceStatePipe.open(DeviceStateTransfer.LOAD, replyTimeoutMillis)) {
                pipe.start(this);
                pipe.writeAll(state);
                checkDeviceState();
            }
        }
    }

    /**
     * SET_DEVICE_STATE_FD with {@code fd} (the pipe end the back-end uses). Returns the fd the
     * back-end chose instead (the caller owns it), or -1 if it uses ours.
     */
    int setDeviceStateFd(int direction, int fd) {
        try (Message reply = exchange(FrontendRequest.SET_DEVICE_STATE_FD,
                new DeviceStateTransfer(direction, DeviceStateTransfer.PHASE_STOPPED), new int[] {fd})) {
            long value = U64Payload.decode(reply.payload()).value();
            boolean noFd = (value & DeviceStateTransfer.REPLY_NO_FD) != 0;
            if (noFd != (reply.fdCount() == 0)) {
                throw broken(new VhostUserException(VhostUserError.IncorrectFds, "SET_DEVICE_STATE_FD reply 0x"
                        + Long.toHexString(value) + " came with " + reply.fdCount() + " fds"));
            }
            if ((value & DeviceStateTransfer.REPLY_ERROR_MASK) != 0) {
                throw new VhostUserException(VhostUserError.BackendInternalError,
                        "back-end refused SET_DEVICE_STATE_FD (" + (direction == DeviceStateTransfer.SAVE ? "save" : "load")
                                + "): 0x" + Long.toHexString(value));
            }
            return noFd ? -1 : reply.takeFd(0);
        }
    }

    private void checkDeviceState() {
        long result = callU64(FrontendRequest.CHECK_DEVICE_STATE, null);
        if (result != 0) {
            throw new VhostUserException(VhostUserError.BackendInternalError,
                    "CHECK_DEVICE_STATE reports failure 0x" + Long.toHexString(result));
        }
    }

    /**
     * A round trip with no side effect (GET_FEATURES), as QEMU uses without REPLY_ACK: once it
     * returns, the back-end has processed every earlier request.
     */
    public void barrier() {
        callU64(FrontendRequest.GET_FEATURES, null);
    }

    /**
     * Waits up to {@code timeoutMillis} for the back-end to close the connection (it exited or was
     * killed). The back-end sends nothing unasked on this channel, so anything that arrives also means
     * the connection is no longer usable.
     *
     * @return true if the connection is gone (the client is then broken), false if it is still open
     */
    public boolean awaitDisconnect(long timeoutMillis) {
        synchronized (requestLock) {
            if (brokenReason != null) {
                return true;
            }
            try (Message unasked = connection.receive(timeoutMillis)) {
                broken(new VhostUserException(VhostUserError.InvalidMessage, "back-end sent " + unasked + " unasked"));
                return true;
            } catch (VhostUserException e) {
                if (e.kind() == VhostUserError.SocketRetry) {
                    return false;
                }
                broken(e);
                return true;
            }
        }
    }

    // ---- state -------------------------------------------------------------------------------

    /** How long each reply is awaited. */
    public Duration replyTimeout() {
        return Duration.ofMillis(replyTimeoutMillis);
    }

    /** True once a failed exchange left the request/reply pairing unknown. */
    public boolean isBroken() {
        return brokenReason != null;
    }

    /** Why the client is broken, or null. */
    public String brokenReason() {
        return brokenReason;
    }

    /** Closes the socket; a call waiting for a reply wakes with Disconnect. Idempotent. */
    @Override
    public void close() {
        if (brokenReason == null) {
            brokenReason = "closed";
        }
        connection.close();
    }

    @Override
    public String toString() {
        return "BackendClient[" + connection + (brokenReason != null ? ", broken: " + brokenReason : "") + "]";
    }

    // ---- the exchange ------------------------------------------------------------------------

    private void vringFd(FrontendRequest type, int index, int eventFd) {
        VringFdPayload payload = new VringFdPayload(index, eventFd < 0);
        if (eventFd < 0) {
            call(type, payload);
        } else {
            call(type, payload, eventFd);
        }
    }

    private long callU64(FrontendRequest type, Payload payload) {
        try (Message reply = exchange(type, payload, new int[0])) {
            return U64Payload.decode(reply.payload()).value();
        }
    }

    /** A request without a reply of its own: acked when REPLY_ACK is negotiated, else fire-and-forget. */
    private void call(FrontendRequest type, Payload payload, int... fds) {
        try (Message ignored = exchange(type, payload, fds)) {
            // exchange checked the ack
        }
    }

    /**
     * Sends {@code type} and returns its reply (own reply or ack), or null when neither is due. The
     * reply's code, flags, size and fd count are checked; an ack is checked for success.
     */
    private Message exchange(FrontendRequest type, Payload payload, int[] fds) {
        synchronized (requestLock) {
            requireUsable();
            type.checkFeature(protocolFeatures);
            boolean wantsAck = !type.alwaysReplies() && ProtocolFeatures.has(protocolFeatures, ProtocolFeatures.REPLY_ACK);
            try {
                connection.sendRequest(type, payload, wantsAck, fds);
            } catch (VhostUserException e) {
                throw broken(e);
            }
            if (!type.alwaysReplies() && !wantsAck) {
                return null;
            }
            Message reply = awaitReply(type);
            if (wantsAck) {
                try (reply) {
                    long ack = U64Payload.decode(reply.payload()).value();
                    if (ack != U64Payload.ACK_OK) {
                        throw new VhostUserException(VhostUserError.BackendInternalError,
                                "back-end refused " + type.name() + " (ack 0x" + Long.toHexString(ack) + ")");
                    }
                }
                return null;
            }
            return reply;
        }
    }

    private Message awaitReply(FrontendRequest type) {
        Message reply;
        try {
            reply = connection.receive(replyTimeoutMillis);
        } catch (VhostUserException e) {
            if (e.kind() == VhostUserError.SocketRetry) {
                connection.close(); // a late reply must never be taken for the answer to a later request
                throw broken(new VhostUserException(VhostUserError.SocketBroken,
                        "no reply to " + type.name() + " within " + replyTimeoutMillis + " ms", e));
            }
            throw broken(e);
        }
        try {
            if (reply.request() != type.code()) {
                throw new VhostUserException(VhostUserError.InvalidMessage, "reply to " + type.name() + " (code "
                        + type.code() + ") has code " + Integer.toUnsignedString(reply.request()));
            }
            if (!reply.header().isReplyTo(type)) {
                throw new VhostUserException(VhostUserError.InvalidMessage, "reply to " + type.name()
                        + " has flags 0x" + Integer.toHexString(reply.header().flags()) + ", expected exactly 0x5");
            }
            type.checkReply(reply.header().sizeUnsigned(), reply.fdCount());
            return reply;
        } catch (VhostUserException e) {
            reply.close();
            throw broken(e);
        }
    }

    private void requireProtocolFeaturesOffered(String request) {
        long offered;
        synchronized (requestLock) {
            offered = offeredFeatures;
        }
        if (offered == -1 || (offered & PROTOCOL_FEATURES_BIT) == 0) {
            throw new VhostUserException(VhostUserError.InvalidOperation, request
                    + " needs bit 30 (VHOST_USER_F_PROTOCOL_FEATURES) in GET_FEATURES, got "
                    + (offered == -1 ? "no GET_FEATURES yet" : "0x" + Long.toHexString(offered)));
        }
    }

    private void requireUsable() {
        String reason = brokenReason;
        if (reason != null) {
            throw new VhostUserException(VhostUserError.SocketBroken, "back-end connection unusable: " + reason);
        }
    }

    /** Records the first failure that broke the pairing of requests and replies, logs it, and returns it. */
    private VhostUserException broken(VhostUserException e) {
        if (brokenReason == null) {
            brokenReason = e.getMessage();
            LOG.log(Level.WARNING, "back-end connection broken: {0}", e.getMessage());
        }
        return e;
    }

    private static void joinQuietly(Thread t) {
        try {
            t.join(1_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
