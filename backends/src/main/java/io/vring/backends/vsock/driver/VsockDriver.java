package io.vring.backends.vsock.driver;

import io.vring.engine.VirtioFeatures;
import io.vring.protocol.BackendClient;
import io.vring.protocol.FrontendConfig;
import io.vring.protocol.FrontendDevice;
import io.vring.protocol.message.ProtocolFeatures;

import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A guest-side virtio-vsock driver in Java: what the Linux guest's virtio_transport does, run
 * against a vhost-user-vsock back-end without a VM, so a device can be driven and measured from a
 * test or a benchmark.
 *
 * <pre>{@code
 * try (VsockDriver driver = VsockDriver.connect(Path.of("/tmp/vhost-vsock.sock"))) {
 *     VsockStream stream = driver.connect(1234);          // reaches the host listener <uds-path>_1234
 *     stream.write(request, 0, request.length);
 *     int n = stream.read(reply, 0, reply.length);
 *     stream.close();
 *     VsockListener listener = driver.listen(5000);       // a host program's "CONNECT 5000"
 *     VsockStream in = listener.accept();
 * }
 * }</pre>
 *
 * <p><b>Set-up.</b> {@link #connect(Path, VsockDriverConfig)} runs the vhost-user start sequence
 * through a {@link FrontendDevice} (memfd guest memory, rx ring 0 and tx ring 1 as QEMU hands them
 * over; the event queue stays with the front-end), negotiating VERSION_1, EVENT_IDX, INDIRECT_DESC
 * and RING_PACKED if asked, with whatever the back-end offers; our CID comes from the back-end's
 * config space (GET_CONFIG, le64 guest_cid). Any vhost-user-vsock back-end serves: vring's
 * {@code VsockDevice}, or vhost-device-vsock. {@link #over} runs the same driver on any other
 * {@link DriverRings}.
 *
 * <p><b>Threads.</b> None of its own: the thread that calls the driver and its streams drives it.
 * Blocking calls ({@link VsockStream#read}, {@link VsockStream#write}, {@link #connect(int)},
 * {@link VsockListener#accept()}) poll the rings while they wait, spinning briefly and then sleeping
 * on the ring's call eventfd; {@link #poll()} does one round for a caller with its own loop. Not
 * thread-safe.
 *
 * <p><b>Packets for no stream</b> (an old connection's late packet, a REQUEST to a port nobody
 * listens on) are answered with RST, as Linux does, unless {@link #onUnmatched} says otherwise.
 */
public final class VsockDriver implements AutoCloseable {
    /** Device feature bit VIRTIO_VSOCK_F_SEQPACKET: the driver asks for it; {@link #seqpacket()} says if the device gave it. */
    public static final int F_SEQPACKET = 1;
    /** First port {@link #connect(int)} picks from (Linux starts above the reserved 1023). */
    static final int FIRST_EPHEMERAL_PORT = 49152;
    /**
     * Rounds of polling with nothing to do before a blocking call sleeps on an eventfd: few, because
     * the device's threads need the CPU a spinning driver would take from them on a small machine.
     */
    private static final int SPINS = 20;
    /** Longest single sleep: the other ring is looked at again after it. */
    private static final long MAX_SLEEP_NANOS = TimeUnit.MILLISECONDS.toNanos(1);
    private static final Logger LOG = System.getLogger(VsockDriver.class.getName());

    private final DriverRings rings;
    private final PacketRings packets;
    private final VsockDriverConfig config;
    private final long guestCid;
    /** The vhost-user front-end we started, closed with us; null over other rings. */
    private final FrontendDevice frontend;
    private final List<VsockStream> streams = new ArrayList<>();
    private final List<VsockListener> listeners = new ArrayList<>();
    private final PacketHeader txHeader = new PacketHeader();
    private final PacketHeader replyHeader = new PacketHeader();
    private final PacketHandler dispatcher = this::dispatch;
    private final byte[] noPayload = new byte[0];
    private PacketHandler tap;
    private PacketHandler unmatched = this::resetUnknown;
    private VsockException failure;
    private int nextPort = FIRST_EPHEMERAL_PORT;
    private int idleRounds;
    private long creditOverruns;
    private long protocolViolations;
    private boolean closed;

    private VsockDriver(DriverRings rings, VsockDriverConfig config, long guestCid, FrontendDevice frontend,
                        ChainLayout rxLayout) {
        this.rings = rings;
        this.config = config;
        this.guestCid = guestCid;
        this.frontend = frontend;
        this.packets = new PacketRings(rings, config.rxBufferSize());
        packets.rxLayout(rxLayout);
        packets.postRx();
    }

    /** Connects to the vhost-user-vsock back-end at {@code socket} with the {@link VsockDriverConfig#defaults()}. */
    public static VsockDriver connect(Path socket) {
        return connect(socket, VsockDriverConfig.defaults());
    }

    /**
     * Connects to the vhost-user-vsock back-end at {@code socket}, sets up memory and the rx and tx
     * rings, and posts receive buffers.
     *
     * @throws io.vring.protocol.VhostUserException if the back-end refuses the set-up, or cannot tell
     *                                              our CID and {@code config} gives none
     */
    public static VsockDriver connect(Path socket, VsockDriverConfig config) {
        long features = FrontendConfig.DEFAULT_FEATURES | VirtioFeatures.bit(F_SEQPACKET)
                | (config.packed() ? VirtioFeatures.bit(VirtioFeatures.RING_PACKED) : 0);
        long data = Math.max(PacketRings.txAreaBytes(config.queueSize()),
                PacketRings.rxAreaBytes(config.queueSize(), config.rxBufferSize()));
        FrontendConfig frontendConfig = FrontendConfig.of(2, config.queueSize()).withFeatures(features)
                .withDataBytesPerRing(data);
        FrontendDevice device = FrontendDevice.start(BackendClient.connect(socket), frontendConfig);
        try {
            long cid = config.guestCid() >= 0 ? config.guestCid() : configSpaceCid(device);
            VsockDriver driver = new VsockDriver(new VhostUserRings(device, frontendConfig.maxIndirect()), config, cid,
                    device, ChainLayout.WHOLE);
            LOG.log(Level.DEBUG, "vsock driver on {0}: CID {1}, features 0x{2}, {3} rings", socket, cid,
                    Long.toHexString(device.features()), device.ringKind());
            return driver;
        } catch (RuntimeException e) {
            device.close();
            throw e;
        }
    }

    /** Runs the driver on rings someone else set up, with {@code config.guestCid()} as our CID. */
    public static VsockDriver over(DriverRings rings, VsockDriverConfig config) {
        return over(rings, config, ChainLayout.WHOLE);
    }

    /** The same, with receive buffers cut as {@code rxLayout} says from the first one posted. */
    public static VsockDriver over(DriverRings rings, VsockDriverConfig config, ChainLayout rxLayout) {
        if (config.guestCid() < 0) {
            throw new IllegalArgumentException("over rings of our own, the config must give the guest CID");
        }
        return new VsockDriver(rings, config, config.guestCid(), null, rxLayout);
    }

    /** GET_CONFIG(0, 8): virtio-vsock's config space is one le64, guest_cid (§5.10.4). */
    private static long configSpaceCid(FrontendDevice device) {
        if (!device.backend().has(ProtocolFeatures.CONFIG)) {
            throw new IllegalArgumentException("the back-end does not offer its config space (no CONFIG protocol "
                    + "feature): give the guest CID in the driver config");
        }
        byte[] config = device.backend().getConfig(0, 8);
        return ByteBuffer.wrap(config).order(ByteOrder.LITTLE_ENDIAN).getLong();
    }

    // ---- what the driver is ------------------------------------------------------------------

    public long guestCid() {
        return guestCid;
    }

    public VsockDriverConfig config() {
        return config;
    }

    /** The negotiated virtio features. */
    public long features() {
        return rings.features();
    }

    /** Whether the device and we agreed on VIRTIO_VSOCK_F_SEQPACKET: {@link #connectSeqpacket} works. */
    public boolean seqpacket() {
        return VirtioFeatures.has(features(), F_SEQPACKET);
    }

    /** The packet layer, for sending packets by hand (probing a device) or changing chain layouts. */
    public PacketRings packets() {
        return packets;
    }

    /** The vhost-user front-end, or null if the driver runs over rings it did not set up. */
    public FrontendDevice frontend() {
        return frontend;
    }

    /** Streams open or being opened (accepted ones included). */
    public int openStreams() {
        return streams.size();
    }

    /** RW packets the device sent past a stream's window (each reset the stream). */
    public long creditOverruns() {
        return creditOverruns;
    }

    /** Packets that broke the protocol on a stream (an unexpected op or RW before RESPONSE). */
    public long protocolViolations() {
        return protocolViolations;
    }

    /** Packets the device wrote that were not packets (short, or len not matching the used length). */
    public long malformedPackets() {
        return packets.malformed();
    }

    // ---- hooks -------------------------------------------------------------------------------

    /** Sees every well-formed packet from the device before it is dispatched; null for none. */
    public void tap(PacketHandler tap) {
        this.tap = tap;
    }

    /** Gets the packets no stream or listener takes, instead of the default RST answer. */
    public void onUnmatched(PacketHandler handler) {
        this.unmatched = handler;
    }

    // ---- streams -----------------------------------------------------------------------------

    /**
     * Opens a stream to host port {@code port} and waits for the answer, up to
     * {@link VsockDriverConfig#connectTimeout()}.
     *
     * @throws VsockException REFUSED if the host answers RST (nobody listens), TIMED_OUT without an answer
     */
    public VsockStream connect(int port) throws VsockException {
        return connected(open(port, config.streamBufferSize()), port);
    }

    /**
     * Opens a SOCK_SEQPACKET connection to host port {@code port} (messages, {@link VsockStream#sendMessage}
     * and {@link VsockStream#receiveMessage}) and waits for the answer, as {@link #connect(int)}.
     *
     * @throws IllegalStateException if the device did not give VIRTIO_VSOCK_F_SEQPACKET (Linux: ESOCKTNOSUPPORT)
     */
    public VsockStream connectSeqpacket(int port) throws VsockException {
        return connected(openSeqpacket(port, config.streamBufferSize()), port);
    }

    /** As {@link #open(int, int)} for a SEQPACKET connection. */
    public VsockStream openSeqpacket(int port, int receiveBufferSize) throws VsockException {
        if (!seqpacket()) {
            throw new IllegalStateException("the device did not negotiate VIRTIO_VSOCK_F_SEQPACKET (features 0x"
                    + Long.toHexString(features()) + ")");
        }
        return open(VsockPacket.SEQPACKET, port, receiveBufferSize);
    }

    private VsockStream connected(VsockStream stream, int port) throws VsockException {
        long deadline = deadline(config.connectTimeout());
        try {
            while (stream.state() == VsockStream.State.CONNECTING) {
                progress(DriverRings.RX, deadline, "an answer to REQUEST for port", port);
            }
        } catch (VsockException e) {
            stream.abort();
            throw e;
        }
        if (stream.isReset()) {
            throw new VsockException(VsockException.Kind.REFUSED, "host port " + Integer.toUnsignedString(port)
                    + " refused the connection (RST)");
        }
        return stream;
    }

    /**
     * Sends a REQUEST to host port {@code port} from a fresh local port and returns the stream in
     * {@link VsockStream.State#CONNECTING} without waiting: it is established once RESPONSE comes
     * ({@link #poll()} or any blocking call handles it), reset on RST.
     */
    public VsockStream open(int port, int receiveBufferSize) throws VsockException {
        return open(VsockPacket.STREAM, port, receiveBufferSize);
    }

    private VsockStream open(int type, int port, int receiveBufferSize) throws VsockException {
        checkOpen();
        VsockStream stream = adopt(type, freePort(port), port, receiveBufferSize);
        stream.sendRequest();
        return stream;
    }

    /** Accepts host-initiated connections to guest port {@code port}, each with the default stream buffer. */
    public VsockListener listen(int port) {
        return listen(port, config.streamBufferSize());
    }

    public VsockListener listen(int port, int streamBufferSize) {
        for (VsockListener listener : listeners) {
            if (listener.port() == port) {
                throw new IllegalStateException("port " + Integer.toUnsignedString(port) + " already listens");
            }
        }
        VsockListener listener = new VsockListener(this, port, streamBufferSize);
        listeners.add(listener);
        return listener;
    }

    // ---- the loop ----------------------------------------------------------------------------

    /**
     * Handles whatever the device did since the last call: packets it wrote (dispatched to streams
     * and listeners) and tx buffers it finished. Never waits.
     *
     * @return packets and tx buffers handled (0: nothing happened)
     * @throws VsockException BROKEN if the device broke a ring; whatever a stream's answer hit
     */
    public int poll() throws VsockException {
        packets.checkRings();
        int done = packets.reclaimTx() + packets.poll(dispatcher);
        if (failure != null) {
            VsockException thrown = failure;
            failure = null;
            throw thrown;
        }
        return done;
    }

    /**
     * One step of a blocking call: poll; if nothing happened, spin a little, then sleep on
     * {@code queue}'s call eventfd up to a millisecond.
     *
     * @throws VsockException TIMED_OUT once {@code deadline} (System.nanoTime) passed
     */
    void progress(int queue, long deadline, String waitingFor, int port) throws VsockException {
        if (poll() > 0) {
            idleRounds = 0;
            return;
        }
        long left = deadline - System.nanoTime();
        if (left <= 0) {
            throw new VsockException(VsockException.Kind.TIMED_OUT, "no " + waitingFor + " "
                    + Integer.toUnsignedString(port) + " in time");
        }
        if (idleRounds++ < SPINS) {
            Thread.onSpinWait();
            return;
        }
        rings.awaitUsed(queue, Math.min(left, MAX_SLEEP_NANOS));
    }

    long deadline(Duration timeout) {
        return System.nanoTime() + timeout.toNanos();
    }

    private void dispatch(PacketHeader header, byte[] bytes, int offset, int length) {
        if (tap != null) {
            tap.onPacket(header, bytes, offset, length);
        }
        try {
            if (header.dstCid() == guestCid && header.srcCid() == VsockPacket.HOST_CID) {
                VsockStream stream = find(header.dstPort(), header.srcPort());
                if (stream != null && stream.type() == header.type()) {
                    stream.onPacket(header, bytes, offset, length);
                    return;
                }
                if (stream == null && header.op() == VsockPacket.REQUEST && header.type() == VsockPacket.STREAM) {
                    VsockListener listener = listener(header.dstPort());
                    if (listener != null) {
                        listener.onRequest(header);
                        return;
                    }
                }
            }
            unmatched.onPacket(header, bytes, offset, length);
        } catch (VsockException e) {
            if (failure == null) {
                failure = e;
            }
        }
    }

    /** The default for packets nobody takes: RST back (never for an RST, never to another CID). */
    private void resetUnknown(PacketHeader header, byte[] bytes, int offset, int length) {
        if (header.op() == VsockPacket.RST || header.dstCid() != guestCid) {
            return;
        }
        LOG.log(Level.DEBUG, "no stream for {0}: RST", header);
        try {
            reply(header, VsockPacket.RST);
        } catch (VsockException e) {
            if (failure == null) {
                failure = e;
            }
        }
    }

    // ---- for streams and listeners -----------------------------------------------------------

    PacketHeader txHeader() {
        return txHeader;
    }

    /** Sends a payload-less packet answering {@code to} (source and destination swapped). */
    void reply(PacketHeader to, int op) throws VsockException {
        replyHeader.set(guestCid, to.srcCid(), to.dstPort(), to.srcPort(), to.type(), op, 0, 0, 0);
        sendBlocking(replyHeader);
    }

    /** Sends a packet without payload, waiting for a free tx slot up to the io timeout. */
    void sendBlocking(PacketHeader header) throws VsockException {
        if (packets.send(header, noPayload, 0, 0)) {
            return;
        }
        long deadline = deadline(config.ioTimeout());
        while (!packets.send(header, noPayload, 0, 0)) {
            packets.checkRings();
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                throw new VsockException(VsockException.Kind.TIMED_OUT, "no tx slot for " + header + " in "
                        + config.ioTimeout());
            }
            rings.awaitUsed(DriverRings.TX, Math.min(left, MAX_SLEEP_NANOS));
        }
    }

    VsockStream adopt(int type, int localPort, int peerPort, int receiveBufferSize) {
        VsockStream stream = new VsockStream(this, type, localPort, peerPort, receiveBufferSize,
                VsockStream.State.CONNECTING);
        streams.add(stream);
        return stream;
    }

    void forget(VsockStream stream) {
        streams.remove(stream);
    }

    void unlisten(VsockListener listener) {
        listeners.remove(listener);
    }

    void violation(VsockStream stream, String what) {
        protocolViolations++;
        LOG.log(Level.WARNING, "{0}: {1}", stream, what);
    }

    void creditOverrun(VsockStream stream, String what) {
        creditOverruns++;
        LOG.log(Level.WARNING, "{0}: {1}; reset", stream, what);
    }

    private VsockStream find(int localPort, int peerPort) {
        for (int i = 0; i < streams.size(); i++) {
            VsockStream stream = streams.get(i);
            if (stream.localPort() == localPort && stream.peerPort() == peerPort) {
                return stream;
            }
        }
        return null;
    }

    private VsockListener listener(int port) {
        for (int i = 0; i < listeners.size(); i++) {
            if (listeners.get(i).port() == port) {
                return listeners.get(i);
            }
        }
        return null;
    }

    /** A local port no stream to {@code peerPort} and no listener uses. */
    private int freePort(int peerPort) {
        for (int tries = 0; tries < 65536; tries++) {
            int port = nextPort;
            nextPort = nextPort == 65535 ? 1024 : nextPort + 1;
            if (find(port, peerPort) == null && listener(port) == null) {
                return port;
            }
        }
        throw new IllegalStateException("no free local port to reach host port " + peerPort);
    }

    private void checkOpen() throws VsockException {
        if (closed) {
            throw new VsockException(VsockException.Kind.CLOSED, "the driver is closed");
        }
        packets.checkRings();
    }

    /**
     * Resets every open stream (best effort: as many RSTs as there are free tx slots), then closes the
     * vhost-user front-end if we started it (the back-end then stops the rings and resets the device).
     */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        // A front-end someone already closed has unmapped the rings: nothing can be sent any more.
        boolean canSend = (frontend == null || frontend.isRunning()) && !rings.queue(DriverRings.TX).isBroken();
        try {
            for (VsockStream stream : List.copyOf(streams)) {
                if (stream.state() != VsockStream.State.CLOSED && canSend) {
                    replyHeader.set(guestCid, VsockPacket.HOST_CID, stream.localPort(), stream.peerPort(), stream.type(),
                            VsockPacket.RST, 0, 0, 0);
                    packets.send(replyHeader, noPayload, 0, 0);
                }
            }
            streams.clear();
            listeners.clear();
        } finally {
            if (frontend != null) {
                frontend.close();
            }
        }
    }
}
