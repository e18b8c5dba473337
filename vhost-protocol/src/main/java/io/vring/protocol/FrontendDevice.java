package io.vring.protocol;

import io.vring.engine.RingKind;
import io.vring.engine.RingPlacement;
import io.vring.engine.VirtioFeatures;
import io.vring.engine.memory.GuestMemory;
import io.vring.engine.os.Libc;
import io.vring.engine.split.SplitLayout;
import io.vring.protocol.message.MemoryRegion;
import io.vring.protocol.message.MemoryTable;
import io.vring.protocol.message.ProtocolFeatures;
import io.vring.protocol.message.VringAddress;

import java.lang.System.Logger;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.lang.System.Logger.Level;
import java.util.ArrayList;
import java.util.List;

/**
 * A Java front-end driving one vhost-user back-end the way QEMU does: it owns the guest memory
 * (memfd regions), the rings (driver side) and their eventfds, the back-end channel, and the
 * {@link BackendClient} it was started with.
 *
 * <pre>{@code
 * try (FrontendDevice device = FrontendDevice.start(BackendClient.connect(socket),
 *         FrontendConfig.of(2, 256).packed().withBusyPoll(false))) {
 *     FrontendRing tx = device.ring(1);
 *     tx.data().copyFrom(MemorySegment.ofArray(frame));            // a buffer in the ring's data area
 *     tx.queue().addReadable(tx.dataGpa(), frame.length);
 *     tx.queue().submit();
 *     tx.publish();                                                // kicks if the back-end asked
 *     if (tx.awaitUsed(1_000)) { tx.queue().pollUsed(); }
 *     FrontendRegion more = device.addRegion(1L << 30, 1 << 20);   // ADD_MEM_REG, acked
 *     int[] bases = device.stop();                                 // GET_VRING_BASE per ring
 *     byte[] state = device.saveState();                           // DEVICE_STATE save
 *     device.resume(BackendClient.connect(otherSocket), state);    // a fresh back-end carries on
 * }
 * }</pre>
 *
 * <p><b>Start</b> ({@link #start}), in QEMU's order: GET_FEATURES, GET/SET_PROTOCOL_FEATURES (the
 * intersection), GET_QUEUE_NUM (MQ), GET_MAX_MEM_SLOTS (CONFIGURE_MEM_SLOTS), SET_BACKEND_REQ_FD
 * (BACKEND_REQ: a socket pair whose other end a {@link FrontendServer} serves), SET_OWNER,
 * SET_FEATURES, SET_STATUS (STATUS), SET_MEM_TABLE or one ADD_MEM_REG per region
 * (CONFIGURE_MEM_SLOTS), then per ring SET_VRING_NUM, SET_VRING_BASE, SET_VRING_ADDR,
 * SET_VRING_CALL, SET_VRING_ERR, SET_VRING_KICK, and SET_VRING_ENABLE(1) per ring, then
 * SET_STATUS(DRIVER_OK). Ring addresses are user addresses of our own mappings (see
 * {@link FrontendRegion}).
 *
 * <p><b>Stop</b> ({@link #stop}): SET_VRING_ENABLE(0) and GET_VRING_BASE per ring; the bases are kept
 * in the rings. {@link #resume} starts the same rings and memory on another back-end connection
 * (a restarted or migrated back-end) from those bases, optionally loading a device state first.
 *
 * <p><b>Memory while running</b>: {@link #addRegion} / {@link #removeRegion} send ADD_MEM_REG /
 * REM_MEM_REG (or a whole new SET_MEM_TABLE without CONFIGURE_MEM_SLOTS) and return once the
 * back-end has applied it (its ack, or a GET_FEATURES barrier without REPLY_ACK); only then is a
 * removed region unmapped. Buffers in a region being removed must have been collected first.
 *
 * <p><b>Inflight tracking</b> (INFLIGHT_SHMFD, when the config asks for it and the back-end offers it):
 * GET_INFLIGHT_FD once, after SET_FEATURES on the first start; the region is kept for the life of the
 * device and sent back with SET_INFLIGHT_FD before the memory table on every start, resume and
 * reconnect, as QEMU does.
 *
 * <p><b>Reconnect</b> ({@link #reconnect}): the back-end died under running rings (no GET_VRING_BASE
 * possible). As QEMU, each ring resumes from its used side (split: the used index in the ring; packed:
 * the driver's own used position), and the whole start sequence runs on the new connection; with
 * inflight tracking the back-end then resubmits what its predecessor left unfinished.
 *
 * <p>{@link #close()} closes everything it owns: back-end client, back-end channel, rings' eventfds,
 * regions. Not thread-safe: one control thread; each ring's queue belongs to one data thread.
 */
public final class FrontendDevice implements AutoCloseable {
    /** Virtio device status bits (virtio 1.x §2.1). */
    static final int STATUS_ACKNOWLEDGE = 1;
    static final int STATUS_DRIVER = 2;
    static final int STATUS_DRIVER_OK = 4;
    static final int STATUS_FEATURES_OK = 8;

    private static final Logger LOG = System.getLogger(FrontendDevice.class.getName());
    private static final long PROTOCOL_FEATURES_BIT = 1L << ProtocolFeatures.VIRTIO_PROTOCOL_FEATURES;
    private static final long PAGE = 4096;
    /** Little-endian u16 at a byte offset: the split used ring's idx, read with acquire as the driver does. */
    private static final VarHandle USED_IDX = ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN).varHandle();

    private final FrontendConfig config;
    private final List<FrontendRegion> regions = new ArrayList<>();
    private final List<FrontendRing> rings = new ArrayList<>();
    private BackendClient backend;
    private FrontendServer backendChannel;
    /** The inflight region from GET_INFLIGHT_FD, kept across reconnects; null without inflight tracking. */
    private BackendClient.InflightArea inflight;
    private long features;
    private int maxMemSlots;
    private boolean running;

    private FrontendDevice(FrontendConfig config, BackendClient backend) {
        this.config = config;
        this.backend = backend;
    }

    /**
     * Runs the start sequence on {@code backend} (which the device then owns) and returns the device
     * with its rings started and enabled.
     *
     * @throws VhostUserException FeatureMismatch if the back-end lacks VERSION_1 or has fewer queues
     *                            than asked; anything the back-end refuses. The back-end client and
     *                            everything made so far are closed.
     */
    public static FrontendDevice start(BackendClient backend, FrontendConfig config) {
        FrontendDevice device = new FrontendDevice(config, backend);
        try {
            device.handshake(-1);
            device.createMemoryAndRings();
            device.sendInflight();
            device.sendMemoryTable();
            device.startRings();
            return device;
        } catch (RuntimeException e) {
            device.close();
            throw e;
        }
    }

    /** The client on the current back-end connection. */
    public BackendClient backend() {
        return backend;
    }

    /** The negotiated virtio features. */
    public long features() {
        return features;
    }

    /** The negotiated protocol features. */
    public long protocolFeatures() {
        return backend.protocolFeatures();
    }

    /** The ring kind the features selected. */
    public RingKind ringKind() {
        return RingKind.of(features);
    }

    public FrontendRing ring(int index) {
        return rings.get(index);
    }

    public List<FrontendRing> rings() {
        return List.copyOf(rings);
    }

    /** The regions the back-end knows, the rings' region first. */
    public List<FrontendRegion> regions() {
        return List.copyOf(regions);
    }

    /** True between a start (or resume) and a stop. */
    public boolean isRunning() {
        return running;
    }

    /** The back-end channel's server, or null if BACKEND_REQ was not negotiated. */
    public FrontendServer backendChannel() {
        return backendChannel;
    }

    // ---- memory while running ----------------------------------------------------------------

    /**
     * Adds a zeroed region of {@code size} bytes at {@code gpa} and tells the back-end
     * (ADD_MEM_REG, or SET_MEM_TABLE with every region). Returns once the back-end applied it.
     */
    public FrontendRegion addRegion(long gpa, long size) {
        for (FrontendRegion r : regions) {
            if (Long.compareUnsigned(gpa, r.guestPhysicalAddress() + r.size()) < 0
                    && Long.compareUnsigned(r.guestPhysicalAddress(), gpa + size) < 0) {
                throw new IllegalArgumentException("GPA 0x" + Long.toHexString(gpa) + "+" + size + " overlaps " + r);
            }
        }
        int limit = slots() ? maxMemSlots : MemoryTable.MAX_REGIONS;
        if (regions.size() >= limit) {
            throw new VhostUserException(VhostUserError.InvalidOperation,
                    "the back-end maps at most " + limit + " regions, " + regions.size() + " in use");
        }
        FrontendRegion region = FrontendRegion.create("vring-guest-" + regions.size(), gpa, size);
        try {
            regions.add(region);
            if (slots()) {
                backend.addMemRegion(region.descriptor(), region.fd());
            } else {
                sendMemoryTable();
            }
            settle();
            return region;
        } catch (RuntimeException e) {
            regions.remove(region);
            region.close();
            throw e;
        }
    }

    /**
     * Tells the back-end to drop {@code region} (REM_MEM_REG, or SET_MEM_TABLE without it) and, once
     * it has, unmaps it and closes its memfd. The rings' region cannot be removed.
     */
    public void removeRegion(FrontendRegion region) {
        int at = regions.indexOf(region);
        if (at < 0) {
            throw new IllegalArgumentException(region + " is not one of this device's regions");
        }
        if (at == 0) {
            throw new IllegalArgumentException("the rings live in " + region + ": it cannot be removed");
        }
        regions.remove(at);
        try {
            if (slots()) {
                backend.removeMemRegion(region.descriptor());
            } else {
                sendMemoryTable();
            }
            settle();
        } catch (RuntimeException e) {
            regions.add(at, region); // the back-end may still map it: keep it mapped too
            throw e;
        }
        region.close();
    }

    // ---- stop, state, resume -----------------------------------------------------------------

    /**
     * Stops every ring: SET_VRING_ENABLE(0) (with protocol features) then GET_VRING_BASE, which the
     * back-end answers once the ring's in-flight work is done. The bases are kept in the rings.
     *
     * @return the bases, by ring index
     */
    public int[] stop() {
        if (!running) {
            throw new IllegalStateException("the device is not running");
        }
        int[] bases = new int[rings.size()];
        boolean enableMessages = usesEnable();
        for (FrontendRing ring : rings) {
            if (enableMessages) {
                backend.setVringEnable(ring.index(), false);
            }
        }
        for (FrontendRing ring : rings) {
            bases[ring.index()] = backend.getVringBase(ring.index());
            ring.base(bases[ring.index()]);
        }
        running = false;
        return bases;
    }

    /** Stops the rings if they run, then DEVICE_STATE save: the back-end's state. */
    public byte[] saveState() {
        if (running) {
            stop();
        }
        return backend.saveDeviceState();
    }

    /**
     * Moves the stopped device to another back-end connection (a new process, or the same one after a
     * reconnect): the old client and back-end channel are closed, the new one negotiates the same
     * virtio features, gets the memory table, loads {@code state} (DEVICE_STATE; null for none), and
     * the rings start from the bases the last {@link #stop()} reported, with the same eventfds.
     */
    public void resume(BackendClient next, byte[] state) {
        if (running) {
            throw new IllegalStateException("stop the device before moving it to another back-end");
        }
        closeBackend();
        backend = next;
        handshake(features);
        sendInflight();
        if (state != null) {
            backend.loadDeviceState(state);
        }
        sendMemoryTable();
        startRings();
    }

    /**
     * Starts the device again on {@code next} after the back-end went away without GET_VRING_BASE
     * (it crashed or was killed), as QEMU does (reference §6.2): each ring resumes from its used side,
     * split at the used index the lost back-end last published in the ring, packed at the driver's own
     * used position for both avail and used, so a new back-end re-reads every chain the old one took
     * but never completed. Then the start sequence runs on {@code next}, SET_INFLIGHT_FD with the
     * region kept from the first start included; the rings' memory and eventfds are the same, the old
     * client is closed. Without inflight tracking a chain completed out of order before the loss is
     * executed again or lost (QEMU's behaviour too): a device that cares negotiates INFLIGHT_SHMFD.
     *
     * @throws VhostUserException InvalidOperation if the old back-end still answers
     */
    public void reconnect(BackendClient next) {
        if (running && !backend.isBroken()) {
            throw new VhostUserException(VhostUserError.InvalidOperation,
                    "the back-end still answers: stop() and resume() move a device that is alive");
        }
        for (FrontendRing ring : rings) {
            ring.base(usedSideBase(ring));
        }
        running = false;
        resume(next, null);
    }

    /** The inflight region kept for SET_INFLIGHT_FD, or null if inflight tracking is not in use. */
    public BackendClient.InflightArea inflight() {
        return inflight;
    }

    /** Closes the back-end client and channel, the rings' eventfds, the regions and the inflight region. Idempotent. */
    @Override
    public void close() {
        running = false;
        if (inflight != null) {
            inflight.close();
        }
        closeBackend();
        for (FrontendRing ring : rings) {
            ring.close();
        }
        for (FrontendRegion region : regions) {
            region.close();
        }
    }

    // ---- the sequence ------------------------------------------------------------------------

    /**
     * Negotiation through SET_FEATURES (and SET_STATUS FEATURES_OK). {@code required} are the virtio
     * features a resumed device needs again, or -1 on a first start.
     */
    private void handshake(long required) {
        long protocol = backend.negotiateProtocolFeatures(config.protocolFeatures());
        long offered = backend.offeredFeatures();
        if (backend.has(ProtocolFeatures.MQ)) {
            int queues = backend.getQueueNum();
            if (queues < config.queueCount()) {
                throw new VhostUserException(VhostUserError.FeatureMismatch,
                        "back-end serves " + queues + " queues, " + config.queueCount() + " wanted");
            }
        }
        if (backend.has(ProtocolFeatures.CONFIGURE_MEM_SLOTS)) {
            maxMemSlots = backend.getMaxMemSlots();
            if (maxMemSlots < 1) {
                throw new VhostUserException(VhostUserError.FeatureMismatch, "back-end offers " + maxMemSlots + " memory slots");
            }
        }
        if (backend.has(ProtocolFeatures.BACKEND_REQ)) {
            openBackendChannel(protocol);
        }
        backend.setOwner();
        long wanted = required == -1 ? config.features() : required;
        long chosen = (offered & wanted) | (offered & PROTOCOL_FEATURES_BIT);
        if (!VirtioFeatures.has(chosen, VirtioFeatures.VERSION_1)) {
            throw new VhostUserException(VhostUserError.FeatureMismatch,
                    "back-end does not offer VIRTIO_F_VERSION_1 (offered 0x" + Long.toHexString(offered) + ")");
        }
        if (required != -1 && (required & ~chosen) != 0) {
            throw new VhostUserException(VhostUserError.FeatureMismatch, "the rings run with features 0x"
                    + Long.toHexString(required) + ", the new back-end offers 0x" + Long.toHexString(offered));
        }
        backend.setFeatures(chosen);
        features = chosen & ~PROTOCOL_FEATURES_BIT;
        if (backend.has(ProtocolFeatures.STATUS)) {
            backend.setStatus(STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
        }
        LOG.log(Level.DEBUG, "negotiated features 0x{0}, protocol {1}", Long.toHexString(features),
                ProtocolFeatures.describe(protocol));
    }

    /**
     * A socketpair from libc rather than {@link Connection#pair()}: closing a junixsocket socket
     * shuts it down, which would end the back-end's duplicate of the end we hand over as well.
     */
    private void openBackendChannel(long protocol) {
        int[] fds = Libc.unixStreamSocketPair();
        Connection ours;
        try {
            ours = Connection.adopt(fds[0]);
        } catch (RuntimeException e) {
            Libc.close(fds[1]);
            throw e;
        }
        try {
            backend.setBackendReqFd(fds[1]);
        } catch (RuntimeException e) {
            ours.close();
            throw e;
        } finally {
            Libc.close(fds[1]); // the back-end has its own copy now
        }
        backendChannel = FrontendServer.start(ours, protocol, config.backendEvents());
    }

    /** One region holding every ring's areas and data, then the driver side of each ring. */
    private void createMemoryAndRings() {
        RingKind kind = RingKind.of(features);
        if (!kind.isValidSize(config.queueSize())) {
            throw new IllegalArgumentException("queue size " + config.queueSize() + " is not valid for " + kind + " rings");
        }
        boolean indirect = VirtioFeatures.has(features, VirtioFeatures.INDIRECT_DESC) && config.maxIndirect() > 0;
        List<RingPlacement> plans = new ArrayList<>();
        long next = config.guestBase();
        for (int i = 0; i < config.queueCount(); i++) {
            RingPlacement plan = RingPlacement.plan(kind, config.queueSize(), next, indirect ? config.maxIndirect() : 0,
                    config.dataBytesPerRing());
            plans.add(plan);
            next += plan.totalBytes();
        }
        long size = (next - config.guestBase() + PAGE - 1) & -PAGE;
        FrontendRegion region = FrontendRegion.create("vring-guest-rings", config.guestBase(), size);
        regions.add(region);
        GuestMemory memory = GuestMemory.of(region.guestRegion());
        for (int i = 0; i < config.queueCount(); i++) {
            rings.add(FrontendRing.open(i, kind, config.queueSize(), plans.get(i), memory, features, config.busyPoll()));
        }
    }

    private void sendMemoryTable() {
        if (slots()) {
            for (FrontendRegion region : regions) {
                backend.addMemRegion(region.descriptor(), region.fd());
            }
        } else {
            List<MemoryRegion> table = new ArrayList<>();
            int[] fds = new int[regions.size()];
            for (int i = 0; i < regions.size(); i++) {
                table.add(regions.get(i).descriptor());
                fds[i] = regions.get(i).fd();
            }
            backend.setMemTable(table, fds);
        }
    }

    private void startRings() {
        FrontendRegion ringRegion = regions.getFirst();
        for (FrontendRing ring : rings) {
            int index = ring.index();
            RingPlacement plan = ring.placement();
            backend.setVringNum(index, ring.queue().size());
            backend.setVringBase(index, ring.base());
            backend.setVringAddr(new VringAddress(index, 0, ringRegion.userAddressOf(plan.rings().descriptorArea()),
                    ringRegion.userAddressOf(plan.rings().deviceArea()), ringRegion.userAddressOf(plan.rings().driverArea()), 0));
            backend.setVringCall(index, ring.callFd());
            backend.setVringErr(index, ring.err().fd());
            backend.setVringKick(index, ring.kickFd());
        }
        if (usesEnable()) {
            for (FrontendRing ring : rings) {
                backend.setVringEnable(ring.index(), true);
            }
        }
        if (backend.has(ProtocolFeatures.STATUS)) {
            backend.setStatus(STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
        }
        running = true;
    }

    /**
     * GET_INFLIGHT_FD the first time (if the config asks for INFLIGHT_SHMFD and it was negotiated),
     * then SET_INFLIGHT_FD with the kept region on every start.
     */
    private void sendInflight() {
        if (!backend.has(ProtocolFeatures.INFLIGHT_SHMFD)) {
            return;
        }
        if (inflight == null) {
            inflight = backend.getInflightFd(config.queueCount(), config.queueSize());
            if (inflight == null) {
                return;
            }
        }
        backend.setInflightFd(inflight);
    }

    /** SET_VRING_BASE after a lost back-end: split the used idx in the ring, packed our used position for both sides. */
    private int usedSideBase(FrontendRing ring) {
        if (ring.kind() == RingKind.PACKED) {
            int position = ring.queue().usedPosition();
            return position | position << 16;
        }
        FrontendRegion region = regions.getFirst();
        long offset = ring.placement().rings().deviceArea() - region.guestPhysicalAddress() + SplitLayout.USED_IDX;
        return Short.toUnsignedInt((short) USED_IDX.getAcquire(region.segment(), offset));
    }

    /** Without REPLY_ACK a memory change is fire-and-forget: a GET_FEATURES round trip says it was applied. */
    private void settle() {
        if (!backend.has(ProtocolFeatures.REPLY_ACK)) {
            backend.barrier();
        }
    }

    private boolean slots() {
        return backend.has(ProtocolFeatures.CONFIGURE_MEM_SLOTS);
    }

    private boolean usesEnable() {
        return (backend.ackedFeatures() & PROTOCOL_FEATURES_BIT) != 0;
    }

    private void closeBackend() {
        try {
            if (backendChannel != null) {
                backendChannel.close();
                backendChannel = null;
            }
        } finally {
            backend.close();
        }
    }
}
