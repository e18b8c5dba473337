package io.vring.protocol;

import io.vring.engine.DeviceQueue;
import io.vring.engine.RingAddresses;
import io.vring.engine.RingKind;
import io.vring.engine.VirtioFeatures;
import io.vring.engine.inflight.InflightBuffer;
import io.vring.engine.inflight.InflightRegionException;
import io.vring.engine.memory.DirtyLog;
import io.vring.engine.memory.GuestMemory;
import io.vring.engine.memory.SharedMemory;
import io.vring.engine.os.NativeCallException;
import io.vring.engine.notify.EventFd;
import io.vring.engine.os.Libc;
import io.vring.protocol.message.DeviceConfig;
import io.vring.protocol.message.DeviceStateTransfer;
import io.vring.protocol.message.FrontendRequest;
import io.vring.protocol.message.InflightDescription;
import io.vring.protocol.message.LogDescription;
import io.vring.protocol.message.MemoryTable;
import io.vring.protocol.message.ProtocolFeatures;
import io.vring.protocol.message.SingleMemoryRegion;
import io.vring.protocol.message.U64Payload;
import io.vring.protocol.message.VringAddress;
import io.vring.protocol.message.VringFdPayload;
import io.vring.protocol.message.VringState;

import java.lang.System.Logger.Level;
import java.nio.ByteBuffer;
import java.util.List;

/**
 * One front-end's session on the main channel: the back-end's state machine. Runs on the
 * connection's control thread, reads a request, acts, answers, and repeats until the front-end goes
 * away; then it stops every ring, resets the device and releases every fd and mapping.
 *
 * <p><b>Errors.</b> A message that breaks the framing or the wire rules (unknown code, a reply where
 * a request belongs, wrong size or fd count) ends the session: the stream cannot be trusted. A
 * request that is well-formed but wrong (a feature that was not negotiated, a ring index out of
 * range, an address outside guest memory, a request out of order) is refused: logged, answered with a
 * failed ack when the front-end asked for one, and the session goes on. A refused request that has
 * a reply of its own ends the session, as there is no way to answer it, except where the reply has
 * an error form: GET_CONFIG (a config of size 0) and the requests whose reply is a u64 status
 * (IOTLB_MSG, POSTCOPY_END, SET_DEVICE_STATE_FD, CHECK_DEVICE_STATE: 1).
 */
final class BackendSession {
    private static final System.Logger LOG = System.getLogger(BackendSession.class.getName());

    /** Protocol features the server implements for every device. */
    static final long SERVER_PROTOCOL_FEATURES = ProtocolFeatures.bit(ProtocolFeatures.MQ)
            | ProtocolFeatures.bit(ProtocolFeatures.REPLY_ACK)
            | ProtocolFeatures.bit(ProtocolFeatures.BACKEND_REQ)
            | ProtocolFeatures.bit(ProtocolFeatures.CONFIGURE_MEM_SLOTS)
            | ProtocolFeatures.bit(ProtocolFeatures.STATUS)
            | ProtocolFeatures.bit(ProtocolFeatures.RESET_DEVICE)
            | ProtocolFeatures.bit(ProtocolFeatures.LOG_SHMFD);
    /** Protocol features offered only when the device asks for them. */
    static final long DEVICE_PROTOCOL_FEATURES = ProtocolFeatures.bit(ProtocolFeatures.CONFIG)
            | ProtocolFeatures.bit(ProtocolFeatures.DEVICE_STATE) | ProtocolFeatures.bit(ProtocolFeatures.INFLIGHT_SHMFD);
    /** Ring features the engine implements for every device; QEMU 7.2 may set them unoffered. */
    static final long ENGINE_RING_FEATURES = VirtioFeatures.RING_FEATURES | VirtioFeatures.bit(VirtioFeatures.IN_ORDER);
    static final long PROTOCOL_FEATURES_BIT = ProtocolFeatures.bit(ProtocolFeatures.VIRTIO_PROTOCOL_FEATURES);
    /** VHOST_F_LOG_ALL: the front-end turns dirty-page logging on with it in SET_FEATURES (migration). */
    static final long LOG_ALL_BIT = ProtocolFeatures.bit(ProtocolFeatures.VIRTIO_LOG_ALL);
    /** Requests whose own reply is a u64 status (0 success): a refusal answers them with a failure. */
    static final java.util.Set<FrontendRequest> STATUS_REPLIES = java.util.EnumSet.of(FrontendRequest.SET_LOG_BASE,
            FrontendRequest.IOTLB_MSG,
            FrontendRequest.POSTCOPY_END, FrontendRequest.SET_DEVICE_STATE_FD, FrontendRequest.CHECK_DEVICE_STATE);
    /** Memory slots offered through GET_MAX_MEM_SLOTS. */
    static final int MAX_MEM_SLOTS = 32;
    /** Virtio status bit the device sets when a queue broke. */
    static final int DEVICE_NEEDS_RESET = 0x40;

    private final Connection connection;
    private final Backend backend;
    private final BackendServer.Options options;
    private final ServerStats stats;
    private final String name;
    private final long offeredFeatures;
    private final long offeredProtocolFeatures;
    private final Vring[] rings;
    private final GuestMemoryMap memory = new GuestMemoryMap(MAX_MEM_SLOTS);
    private final DeviceStateChannel deviceState = new DeviceStateChannel();

    private boolean owned;
    private long ackedFeatures;
    private boolean protocolFeaturesSet;
    private long ackedProtocolFeatures;
    private volatile int status;
    /** The back-end channel of SET_BACKEND_REQ_FD, or null. Read by other threads (config change). */
    private volatile FrontendClient backendChannel;
    /** The dirty-page log of SET_LOG_BASE (mapping and view), its optional eventfd, or null. */
    private SharedMemory logMapping;
    private DirtyLog dirtyLog;
    private EventFd logFd;
    /** The inflight region of SET_INFLIGHT_FD (or the one GET_INFLIGHT_FD made), or null. */
    private SharedMemory inflightMapping;
    private InflightBuffer inflight;

    BackendSession(Connection connection, Backend backend, BackendServer.Options options, ServerStats stats) {
        this.connection = connection;
        this.backend = backend;
        this.options = options;
        this.stats = stats;
        this.name = options.name();
        this.offeredFeatures = backend.features() | PROTOCOL_FEATURES_BIT | LOG_ALL_BIT;
        this.offeredProtocolFeatures = SERVER_PROTOCOL_FEATURES | (backend.protocolFeatures() & DEVICE_PROTOCOL_FEATURES);
        int queues = backend.queueCount();
        if (queues < 1 || queues > VringFdPayload.MAX_INDEX + 1) {
            throw new IllegalArgumentException("a device has 1.." + (VringFdPayload.MAX_INDEX + 1) + " queues, not " + queues);
        }
        this.rings = new Vring[queues];
        for (int i = 0; i < queues; i++) {
            rings[i] = new Vring(i);
        }
    }

    /** Serves requests until the front-end disconnects or breaks the protocol; always cleans up. */
    void run() {
        LOG.log(Level.INFO, "{0}: front-end connected", name);
        try {
            while (true) {
                try (Message m = connection.receive()) {
                    handle(m);
                }
            }
        } catch (VhostUserException e) {
            if (e.kind() == VhostUserError.Disconnect) {
                LOG.log(Level.INFO, "{0}: front-end disconnected", name);
            } else {
                LOG.log(Level.WARNING, "{0}: closing the connection: {1}: {2}", name, e.kind(), e.getMessage());
            }
        } catch (RuntimeException | Error e) {
            LOG.log(Level.ERROR, name + ": closing the connection after an internal error", e);
        } finally {
            teardown();
        }
    }

    private void handle(Message m) {
        FrontendRequest request = FrontendRequest.of(m.request()).orElseThrow(() -> new VhostUserException(
                VhostUserError.InvalidMessage, "unknown request code " + Integer.toUnsignedString(m.request())));
        if (m.header().isReply()) {
            throw new VhostUserException(VhostUserError.InvalidMessage, request.name() + " arrived flagged as a reply");
        }
        request.checkRequest(m.header().sizeUnsigned(), m.fdCount());
        try {
            if (request != FrontendRequest.GET_PROTOCOL_FEATURES && request != FrontendRequest.SET_PROTOCOL_FEATURES) {
                request.checkFeature(ackedProtocolFeatures);
            }
            dispatch(request, m);
            if (wantsAck(request, m)) {
                connection.sendAck(request, true);
            }
        } catch (VhostUserException e) {
            if (!isRefusal(e)) {
                throw e;
            }
            stats.refused();
            LOG.log(Level.WARNING, "{0}: refused {1}: {2}", name, request.name(), e.getMessage());
            if (request == FrontendRequest.GET_CONFIG) {
                connection.sendReply(request, new DeviceConfig(0, 0, new byte[0]));
            } else if (STATUS_REPLIES.contains(request)) {
                connection.sendReply(request, new U64Payload(U64Payload.ACK_FAILED));
            } else if (request.alwaysReplies()) {
                throw new VhostUserException(e.kind(), request.name() + " cannot be answered: " + e.getMessage(), e);
            } else if (wantsAck(request, m)) {
                connection.sendAck(request, false);
            }
        }
    }

    private boolean wantsAck(FrontendRequest request, Message m) {
        return !request.alwaysReplies() && m.header().needsReply()
                && ProtocolFeatures.has(ackedProtocolFeatures, ProtocolFeatures.REPLY_ACK);
    }

    private static boolean isRefusal(VhostUserException e) {
        return switch (e.kind()) {
            case InvalidParam, InvalidOperation, FeatureMismatch, VringIndexNotFound, ReqHandlerError,
                 BackendInternalError -> true;
            default -> false;
        };
    }

    private void dispatch(FrontendRequest request, Message m) {
        ByteBuffer p = m.payload();
        switch (request) {
            case GET_FEATURES -> connection.sendReply(request, new U64Payload(offeredFeatures));
            case SET_FEATURES -> setFeatures(U64Payload.decode(p).value());
            case SET_OWNER -> {
                if (owned) {
                    throw new VhostUserException(VhostUserError.InvalidOperation, "the session already has an owner");
                }
                owned = true;
            }
            case RESET_OWNER -> {
                for (Vring r : rings) {
                    stopRing(r, true);
                    r.enabled(false);
                }
            }
            case GET_PROTOCOL_FEATURES -> connection.sendReply(request, new U64Payload(offeredProtocolFeatures));
            case SET_PROTOCOL_FEATURES -> setProtocolFeatures(U64Payload.decode(p).value());
            case GET_QUEUE_NUM -> connection.sendReply(request, new U64Payload(rings.length));
            case GET_MAX_MEM_SLOTS -> connection.sendReply(request, new U64Payload(MAX_MEM_SLOTS));
            case SET_MEM_TABLE -> setMemTable(m);
            case ADD_MEM_REG -> {
                SingleMemoryRegion r = SingleMemoryRegion.decode(p);
                int fd = m.takeFd(0);
                changeMemory(() -> {
                    memory.add(r.region(), fd);
                    return List.of();
                });
            }
            case REM_MEM_REG -> {
                SingleMemoryRegion r = SingleMemoryRegion.decode(p);
                changeMemory(() -> List.of(memory.remove(r.region())));
            }
            case SET_VRING_NUM -> setVringNum(VringState.decode(p));
            case SET_VRING_ADDR -> setVringAddr(VringAddress.decode(p));
            case SET_VRING_BASE -> setVringBase(VringState.decode(p));
            case GET_VRING_BASE -> connection.sendReply(request, getVringBase(VringState.decode(p)));
            case SET_VRING_KICK -> setVringKick(m);
            case SET_VRING_CALL -> {
                VringFdPayload v = vringFd(request, m);
                ring(v.index()).call(eventFd(m, v));
            }
            case SET_VRING_ERR -> {
                VringFdPayload v = vringFd(request, m);
                ring(v.index()).err(eventFd(m, v));
            }
            case SET_VRING_ENABLE -> setVringEnable(VringState.decode(p));
            case GET_CONFIG -> connection.sendReply(request, getConfig(DeviceConfig.decode(p)));
            case SET_CONFIG -> {
                DeviceConfig c = DeviceConfig.decode(p);
                checkConfigRange(c.offset(), c.length());
                backend.writeConfig(c.offset(), c.data());
            }
            case SET_BACKEND_REQ_FD -> {
                closeBackendChannel();
                backendChannel = FrontendClient.adopt(m.takeFd(0), ackedProtocolFeatures);
            }
            case RESET_DEVICE -> resetDevice();
            case SET_STATUS -> {
                long v = U64Payload.decode(p).value();
                if (v == 0) {
                    resetDevice();
                }
                status = (int) v;
            }
            case GET_STATUS -> connection.sendReply(request, new U64Payload(Integer.toUnsignedLong(status)));
            case SET_LOG_BASE -> {
                setLogBase(LogDescription.decode(p), m.takeFd(0));
                connection.sendReply(request, new U64Payload(U64Payload.ACK_OK)); // QEMU reads a reply, ignores its payload
            }
            case SET_LOG_FD -> {
                if (!ProtocolFeatures.has(ackedProtocolFeatures, ProtocolFeatures.LOG_SHMFD)) {
                    throw new VhostUserException(VhostUserError.InvalidOperation, "SET_LOG_FD needs LOG_SHMFD, not negotiated");
                }
                if (logFd != null) {
                    logFd.close();
                }
                logFd = EventFd.wrap(m.takeFd(0));
            }
            case GET_INFLIGHT_FD -> getInflightFd(InflightDescription.decode(p));
            case SET_INFLIGHT_FD -> setInflightFd(InflightDescription.decode(p), m.takeFd(0));
            case SET_DEVICE_STATE_FD -> connection.sendReply(request, new U64Payload(setDeviceStateFd(m)));
            case CHECK_DEVICE_STATE -> connection.sendReply(request, new U64Payload(checkDeviceState()));
            default -> throw new VhostUserException(VhostUserError.InvalidOperation, request.name()
                    + " is not supported by this back-end (its feature was not offered)");
        }
    }

    // ---- features ----

    private void setFeatures(long features) {
        long unknown = features & ~(offeredFeatures | ENGINE_RING_FEATURES);
        if (unknown != 0) {
            throw new VhostUserException(VhostUserError.InvalidParam, "SET_FEATURES 0x" + Long.toHexString(features)
                    + " has bits the back-end did not offer: 0x" + Long.toHexString(unknown));
        }
        long unoffered = features & ~offeredFeatures;
        if (unoffered != 0) {
            LOG.log(Level.INFO, "{0}: front-end set ring features it was not offered (0x{1}); the engine implements them",
                    name, Long.toHexString(unoffered));
        }
        boolean loggingWas = isLogging();
        ackedFeatures = features;
        backend.featuresAcked(features & ~(PROTOCOL_FEATURES_BIT | LOG_ALL_BIT));
        if (isLogging() != loggingWas) {
            LOG.log(Level.INFO, "{0}: dirty-page logging {1}", name, isLogging() ? "on" : "off");
            restartRunningRings();
        }
        if ((features & PROTOCOL_FEATURES_BIT) == 0) {
            for (Vring r : rings) {
                r.enabled(true); // without protocol features there is no SET_VRING_ENABLE: rings start enabled
            }
        }
    }

    private void setProtocolFeatures(long features) {
        long unknown = features & ~offeredProtocolFeatures;
        if (unknown != 0) {
            throw new VhostUserException(VhostUserError.InvalidParam, "SET_PROTOCOL_FEATURES has bits that were not offered: "
                    + ProtocolFeatures.describe(unknown));
        }
        ackedProtocolFeatures = features;
        protocolFeaturesSet = true;
    }

    // ---- memory ----

    /** A memory change: rings that run are stopped, moved to the new snapshot and started again. */
    private interface MemoryChange {
        List<GuestMemoryMap.Mapped> apply();
    }

    private void setMemTable(Message m) {
        MemoryTable table = MemoryTable.decode(m.payload(), m.fdCount());
        int[] fds = new int[m.fdCount()];
        for (int i = 0; i < fds.length; i++) {
            fds[i] = m.takeFd(i);
        }
        changeMemory(() -> memory.replace(table.regions(), fds));
    }

    private void changeMemory(MemoryChange change) {
        boolean[] wasRunning = new boolean[rings.length];
        for (Vring r : rings) {
            wasRunning[r.index()] = r.isStarted();
            stopRing(r, true);
        }
        List<GuestMemoryMap.Mapped> released;
        try {
            released = change.apply();
        } finally {
            for (Vring r : rings) {
                if (wasRunning[r.index()]) {
                    restartOrReport(r);
                }
            }
        }
        GuestMemoryMap.release(released);
    }

    // ---- rings ----

    private Vring ring(long index) {
        if (index < 0 || index >= rings.length) {
            throw new VhostUserException(VhostUserError.VringIndexNotFound, "ring " + index + " does not exist; the device has "
                    + rings.length + " queue" + (rings.length == 1 ? "" : "s"));
        }
        return rings[(int) index];
    }

    private Vring stoppedRing(long index, String request) {
        Vring r = ring(index);
        if (r.isStarted()) {
            throw new VhostUserException(VhostUserError.InvalidOperation, request + " for " + r
                    + " while it runs; stop it first with GET_VRING_BASE");
        }
        return r;
    }

    private void setVringNum(VringState s) {
        Vring r = stoppedRing(s.indexUnsigned(), "SET_VRING_NUM");
        long n = s.numUnsigned();
        if (n < 1 || n > backend.maxQueueSize()) {
            throw new VhostUserException(VhostUserError.InvalidParam, "SET_VRING_NUM " + n + " for " + r + ": the device takes 1.."
                    + backend.maxQueueSize());
        }
        r.size((int) n);
    }

    private void setVringAddr(VringAddress a) {
        Vring r = ring(Integer.toUnsignedLong(a.index()));
        if (r.isStarted()) {
            VringAddress old = r.address();
            if (old.descUserAddr() != a.descUserAddr() || old.usedUserAddr() != a.usedUserAddr()
                    || old.availUserAddr() != a.availUserAddr()) {
                throw new VhostUserException(VhostUserError.InvalidOperation, "SET_VRING_ADDR moves " + r + " while it runs");
            }
            if (old.flags() != a.flags() || old.logGuestAddr() != a.logGuestAddr()) {
                // QEMU sets VHOST_VRING_F_LOG on running rings when migration starts: apply it at a restart
                stopRing(r, true);
                r.address(a);
                startRing(r);
                return;
            }
        }
        r.address(a);
    }

    private void setVringBase(VringState s) {
        Vring r = stoppedRing(s.indexUnsigned(), "SET_VRING_BASE");
        int num = s.num();
        if (RingKind.of(ackedFeatures) == RingKind.PACKED) {
            int avail = num & 0xFFFF;
            int used = num >>> 16;
            // DPDK sends only the avail half (its GET_VRING_BASE returns only that too), so a used half
            // of 0 is read as "drained": used = avail. QEMU's own 0 (slot 0, wrap 0) means the same
            // unless chains were left in flight at a stop, which this server's drain avoids; after a
            // crash the inflight region, not the base, positions a tracked packed ring.
            r.positions(avail, used == 0 ? avail : used);
        } else {
            if ((num >>> 16) != 0) {
                throw new VhostUserException(VhostUserError.InvalidParam, "SET_VRING_BASE 0x" + Integer.toHexString(num)
                        + " for split " + r + ": bits 16-31 are reserved");
            }
            r.positions(num, 0);
        }
    }

    private VringState getVringBase(VringState s) {
        Vring r = ring(s.indexUnsigned());
        stopRing(r, true);
        r.dropKickAndCall();
        int base = RingKind.of(ackedFeatures) == RingKind.PACKED
                ? (r.availPosition() & 0xFFFF) | (r.usedPosition() << 16)
                : r.availPosition() & 0xFFFF;
        return new VringState(r.index(), base);
    }

    private static VringFdPayload vringFd(FrontendRequest request, Message m) {
        VringFdPayload v = VringFdPayload.decode(m.payload());
        v.checkFds(request.name(), m.fdCount());
        return v;
    }

    private static EventFd eventFd(Message m, VringFdPayload v) {
        return v.noFd() ? null : EventFd.wrap(m.takeFd(0));
    }

    private void setVringKick(Message m) {
        VringFdPayload v = vringFd(FrontendRequest.SET_VRING_KICK, m);
        Vring r = ring(v.index());
        boolean restart = r.isStarted();
        stopRing(r, true);
        r.kick(eventFd(m, v));
        if (restart) {
            LOG.log(Level.INFO, "{0}: new kick fd for running {1}: restarted", name, r);
        }
        startRing(r);
    }

    private void setVringEnable(VringState s) {
        if (!protocolFeaturesSet && (ackedFeatures & PROTOCOL_FEATURES_BIT) == 0) {
            throw new VhostUserException(VhostUserError.InvalidOperation,
                    "SET_VRING_ENABLE needs VHOST_USER_F_PROTOCOL_FEATURES, which was not negotiated");
        }
        Vring r = ring(s.indexUnsigned());
        if (s.num() != 0 && s.num() != 1) {
            throw new VhostUserException(VhostUserError.InvalidParam, "SET_VRING_ENABLE " + s.numUnsigned() + " for " + r
                    + ": 0 or 1");
        }
        r.enabled(s.num() == 1);
        // A line per change: a ring started but never enabled looks, from the guest, like a hung device.
        LOG.log(Level.INFO, "{0}: {1} {2}", name, r, s.num() == 1 ? "enabled" : "disabled");
        if (r.isStarted()) {
            r.worker().wakeUp();
        }
    }

    /**
     * A ring that ran before a memory change runs again on the new snapshot. If it cannot (its areas
     * were in a region the front-end removed) it stays stopped, and the front-end hears of it through
     * the error eventfd and DEVICE_NEEDS_RESET, as for a ring that broke.
     */
    private void restartOrReport(Vring r) {
        try {
            startRing(r);
        } catch (VhostUserException e) {
            stats.ringBroke();
            LOG.log(Level.ERROR, "{0}: {1} cannot run again after the change: {2}", name, r, e.getMessage());
            status |= DEVICE_NEEDS_RESET;
            r.signalErr();
        }
    }

    /** Starts {@code r} from what the front-end sent; refuses if something is missing. */
    private void startRing(Vring r) {
        GuestMemory snapshot = memory.snapshot();
        if (snapshot == null) {
            throw new VhostUserException(VhostUserError.InvalidOperation, "cannot start " + r + ": no memory table yet");
        }
        if (r.size() == 0 || r.address() == null) {
            throw new VhostUserException(VhostUserError.InvalidOperation, "cannot start " + r + ": "
                    + (r.size() == 0 ? "SET_VRING_NUM" : "SET_VRING_ADDR") + " has not been sent");
        }
        RingKind kind = RingKind.of(ackedFeatures);
        if (!kind.isValidSize(r.size())) {
            throw new VhostUserException(VhostUserError.InvalidParam, "cannot start " + r + ": " + r.size()
                    + " is not a valid " + kind.name().toLowerCase() + " queue size");
        }
        VringAddress a = r.address();
        RingAddresses areas = new RingAddresses(memory.toGuestPhysical(a.descUserAddr(), "descriptor area of " + r),
                memory.toGuestPhysical(a.availUserAddr(), "driver area of " + r),
                memory.toGuestPhysical(a.usedUserAddr(), "device area of " + r));
        String queueName = name + "/q" + r.index();
        DeviceQueue q = kind.device(queueName, snapshot, r.size(), areas, ackedFeatures & ~(PROTOCOL_FEATURES_BIT | LOG_ALL_BIT),
                r.availPosition(), r.usedPosition());
        q.errorNotifier(() -> ringBroke(r, q));
        if (inflight != null && r.index() < inflight.numQueues() && !q.isBroken()) {
            try {
                int resubmitted = q.trackInflight(inflight, r.index());
                if (resubmitted > 0) {
                    LOG.log(Level.INFO, "{0}: {1}: {2} requests in flight before the restart are resubmitted first",
                            name, r, Integer.toString(resubmitted));
                }
            } catch (InflightRegionException | IllegalArgumentException | IllegalStateException e) {
                // trackInflight marked the queue broken for a refused region; the rest are ours to report
                q.markBroken("inflight region refused: " + e.getMessage());
            }
        }
        if (isLogging() && !q.isBroken()) {
            q.logDirty(dirtyLog, a.logsUsedRing() ? a.logGuestAddr() : -1);
        }
        RingWorker w = new RingWorker(r, backend, q, r.kick(), options.busyPoll(), "vring-" + queueName);
        r.started(q, w);
        stats.ringStarted(kind);
        LOG.log(Level.INFO, "{0}: {1} started: {2}, {3} entries, avail 0x{4}, used 0x{5}, {6}{7}", name, r,
                kind.name().toLowerCase(), Integer.toString(r.size()), Integer.toHexString(q.availPosition()),
                Integer.toHexString(q.usedPosition()), r.kick() == null || options.busyPoll() ? "busy-poll" : "eventfd",
                r.isEnabled() ? "" : ", disabled");
        backend.start(r.index(), q, w);
        w.start();
    }

    /**
     * Stops {@code r} if it runs: parks its worker, lets the device finish what it can ({@code drain}),
     * publishes, calls the driver if it wants, and records the positions to resume from.
     */
    private void stopRing(Vring r, boolean drain) {
        if (!r.isStarted()) {
            return;
        }
        DeviceQueue q = r.queue();
        r.worker().stop();
        try {
            if (drain) {
                backend.stop(r.index(), q);
            }
            q.publish();
            if (q.needsNotification()) {
                r.signalCall();
            }
        } finally {
            r.positions(q.availPosition(), q.usedPosition());
            r.stopped();
        }
        LOG.log(Level.INFO, "{0}: {1} stopped at avail {2}, used {3}", name, r, r.availPosition(), r.usedPosition());
    }

    /** Runs on whichever thread saw the queue break (usually the worker). */
    private void ringBroke(Vring r, DeviceQueue q) {
        stats.ringBroke();
        LOG.log(Level.ERROR, "{0}: {1} is broken and stops processing: {2}", name, r, q.brokenReason());
        status |= DEVICE_NEEDS_RESET;
        r.signalErr();
    }

    private void resetDevice() {
        for (Vring r : rings) {
            stopRing(r, false);
            r.reset();
        }
        status = 0;
        dropInflight(); // QEMU frees its region on reset and asks for a new one
        backend.reset();
    }

    // ---- dirty-page log ----

    /** Logging is on while the log is mapped and LOG_ALL is in the features. */
    private boolean isLogging() {
        return dirtyLog != null && (ackedFeatures & LOG_ALL_BIT) != 0;
    }

    /** SET_LOG_BASE: maps the new log and moves running rings to it; the old log is unmapped after. */
    private void setLogBase(LogDescription d, int fd) {
        SharedMemory mapping;
        try {
            mapping = SharedMemory.openRange(fd, d.mmapOffset(), d.mmapSize());
        } catch (IllegalArgumentException | NativeCallException e) {
            throw new VhostUserException(VhostUserError.InvalidParam, "SET_LOG_BASE: cannot map the log ("
                    + d.mmapSize() + " bytes at " + d.mmapOffset() + "): " + e.getMessage(), e);
        }
        SharedMemory old = logMapping;
        logMapping = mapping;
        dirtyLog = DirtyLog.over(mapping.segment());
        LOG.log(Level.INFO, "{0}: dirty log of {1} bytes ({2} pages){3}", name, Long.toString(d.mmapSize()),
                Long.toString(dirtyLog.pages()), isLogging() ? ", logging" : "");
        restartRunningRings();
        if (old != null) {
            old.close();
        }
    }

    /** Stops and starts every running ring so it picks up a changed log or logging state. */
    private void restartRunningRings() {
        for (Vring r : rings) {
            if (r.isStarted()) {
                stopRing(r, true);
                restartOrReport(r);
            }
        }
    }

    private void dropLog() {
        dirtyLog = null;
        if (logMapping != null) {
            logMapping.close();
            logMapping = null;
        }
        if (logFd != null) {
            logFd.close();
            logFd = null;
        }
    }

    // ---- inflight ----

    /**
     * GET_INFLIGHT_FD: a new zeroed memfd of num_queues x stride bytes for the ring layout the
     * features chose, returned with its size. Kept mapped: QEMU hands it back with SET_INFLIGHT_FD.
     */
    private void getInflightFd(InflightDescription d) {
        RingKind kind = RingKind.of(ackedFeatures);
        int queues = d.numQueues();
        if (queues < 1 || queues > rings.length) {
            throw new VhostUserException(VhostUserError.InvalidParam, "GET_INFLIGHT_FD for " + queues
                    + " queues; the device has " + rings.length);
        }
        long size;
        try {
            size = InflightBuffer.size(kind, queues, d.queueSize());
        } catch (InflightRegionException e) {
            throw new VhostUserException(VhostUserError.InvalidParam, "GET_INFLIGHT_FD: " + e.getMessage(), e);
        }
        SharedMemory region = SharedMemory.create(name + "-inflight", size);
        try {
            replaceInflight(region, InflightBuffer.of(kind, region.segment(), queues, d.queueSize()));
            connection.sendReply(FrontendRequest.GET_INFLIGHT_FD, new InflightDescription(size, 0, queues, d.queueSize()),
                    region.fd());
        } catch (RuntimeException e) {
            if (inflightMapping == region) {
                dropInflight();
            } else {
                region.close();
            }
            throw e;
        }
        LOG.log(Level.INFO, "{0}: inflight region of {1} bytes for {2} {3} queues of {4}", name, Long.toString(size),
                Integer.toString(queues), kind.name().toLowerCase(), Integer.toString(d.queueSize()));
    }

    /** SET_INFLIGHT_FD: maps the region the front-end kept (after a reconnect: what the old back-end wrote). */
    private void setInflightFd(InflightDescription d, int fd) {
        for (Vring r : rings) {
            if (r.isStarted()) {
                Libc.close(fd);
                throw new VhostUserException(VhostUserError.InvalidOperation, "SET_INFLIGHT_FD while " + r + " runs");
            }
        }
        RingKind kind = RingKind.of(ackedFeatures);
        if (d.numQueues() < 1 || d.numQueues() > rings.length) {
            Libc.close(fd);
            throw new VhostUserException(VhostUserError.InvalidParam, "SET_INFLIGHT_FD for " + d.numQueues()
                    + " queues; the device has " + rings.length);
        }
        SharedMemory region;
        try {
            region = SharedMemory.openRange(fd, d.mmapOffset(), d.mmapSize());
        } catch (IllegalArgumentException | NativeCallException e) {
            throw new VhostUserException(VhostUserError.InvalidParam, "SET_INFLIGHT_FD: cannot map " + d + ": "
                    + e.getMessage(), e);
        }
        try {
            replaceInflight(region, InflightBuffer.of(kind, region.segment(), d.numQueues(), d.queueSize()));
        } catch (InflightRegionException | IllegalArgumentException e) {
            region.close();
            throw new VhostUserException(VhostUserError.InvalidParam, "SET_INFLIGHT_FD: " + e.getMessage(), e);
        }
    }

    private void replaceInflight(SharedMemory mapping, InflightBuffer buffer) {
        dropInflight();
        inflightMapping = mapping;
        inflight = options.inflightProbe() == null ? buffer : buffer.withProbe(options.inflightProbe());
    }

    private void dropInflight() {
        if (inflightMapping != null) {
            inflightMapping.close();
        }
        inflightMapping = null;
        inflight = null;
    }

    // ---- config ----

    private void checkConfigRange(int offset, int length) {
        long end = Integer.toUnsignedLong(offset) + length;
        if (length == 0 || offset < 0 || end > backend.configSize()) {
            throw new VhostUserException(VhostUserError.InvalidParam, "config range " + Integer.toUnsignedString(offset)
                    + "+" + length + " is outside the device's " + backend.configSize() + "-byte config space");
        }
    }

    private DeviceConfig getConfig(DeviceConfig request) {
        checkConfigRange(request.offset(), request.length());
        byte[] data = new byte[request.length()];
        backend.readConfig(request.offset(), data);
        return new DeviceConfig(request.offset(), request.flags(), data);
    }

    // ---- device state ----

    private long setDeviceStateFd(Message m) {
        DeviceStateTransfer t = DeviceStateTransfer.decode(m.payload());
        for (Vring r : rings) {
            if (r.isStarted()) {
                throw new VhostUserException(VhostUserError.InvalidOperation, "SET_DEVICE_STATE_FD while " + r
                        + " runs: the device must be suspended (every ring stopped)");
            }
        }
        int fd = m.takeFd(0);
        if (t.saves()) {
            byte[] state;
            try {
                state = backend.saveState();
            } catch (RuntimeException e) {
                Libc.close(fd);
                throw e;
            }
            deviceState.save(fd, state, name);
        } else {
            deviceState.load(fd, name);
        }
        return DeviceStateTransfer.REPLY_NO_FD;
    }

    private long checkDeviceState() {
        try {
            byte[] loaded = deviceState.finish();
            if (loaded != null) {
                backend.loadState(loaded);
            }
            return U64Payload.ACK_OK;
        } catch (RuntimeException e) {
            LOG.log(Level.WARNING, "{0}: device state transfer failed: {1}", name, e.getMessage());
            return U64Payload.ACK_FAILED;
        }
    }

    // ---- teardown ----

    private void closeBackendChannel() {
        FrontendClient c = backendChannel;
        backendChannel = null;
        if (c != null) {
            c.close();
        }
    }

    /**
     * Tells the front-end the device's config space changed (BACKEND_CONFIG_CHANGE_MSG), if the
     * back-end channel and CONFIG were negotiated; returns whether the message went out. Any thread.
     */
    boolean configChanged() {
        FrontendClient c = backendChannel;
        if (c == null || !ProtocolFeatures.has(ackedProtocolFeatures, ProtocolFeatures.CONFIG)) {
            return false;
        }
        try {
            c.configChanged();
            return true;
        } catch (VhostUserException e) {
            LOG.log(Level.WARNING, "{0}: config change notification failed: {1}", name, e.getMessage());
            return false;
        }
    }

    private void teardown() {
        for (Vring r : rings) {
            try {
                stopRing(r, true);
            } catch (RuntimeException e) {
                LOG.log(Level.ERROR, name + ": stopping " + r + " failed", e);
            }
            r.close();
        }
        try {
            backend.reset();
        } catch (RuntimeException e) {
            LOG.log(Level.ERROR, name + ": the device failed to reset", e);
        }
        deviceState.close();
        dropInflight();
        dropLog();
        closeBackendChannel();
        memory.close();
        connection.close();
        stats.sessionEnded();
    }
}
