package io.vring.backends.vsock;

import io.vring.backends.vsock.driver.ChainLayout;
import io.vring.backends.vsock.driver.DriverRings;
import io.vring.backends.vsock.driver.PacketRings;
import io.vring.backends.vsock.driver.VsockDriver;
import io.vring.backends.vsock.driver.VsockDriverConfig;
import io.vring.backends.vsock.driver.VsockException;
import io.vring.backends.vsock.driver.VsockPacket;
import io.vring.engine.DeviceQueue;
import io.vring.engine.DriverQueue;
import io.vring.engine.RingKind;
import io.vring.engine.RingPlacement;
import io.vring.engine.VirtioFeatures;
import io.vring.engine.memory.GuestMemory;
import io.vring.engine.memory.SharedMemory;
import io.vring.protocol.BackendServer;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;

/**
 * The product {@link VsockDriver} set up for device tests, in one of two ways:
 * <ul>
 * <li>engine level: driver queues over a memfd that a {@link VsockDevice} serves through device queues
 * on the same memory, run by {@link RingRunner} threads (rx and tx on different threads, as the
 * control plane runs them), with any descriptor layout on tx and rx and optionally indirect tables;
 * <li>{@link #overVhostUser}: the device behind a real {@link BackendServer}, the driver connected to
 * it as any user of {@link VsockDriver#connect} is.
 * </ul>
 * It sees every packet the device writes (the driver's tap) and keeps the ones no stream takes
 * instead of answering them, so tests can check the device's every word; {@link #sendRaw} injects
 * packets a correct driver never sends.
 */
final class GuestDriver implements AutoCloseable {
    static final long GUEST_CID = 3;
    static final int QUEUE_SIZE = 128;

    /** How a tx packet is cut into descriptors. */
    enum Split { WHOLE, HEADER_APART, HEADER_TORN, SCATTERED }

    /** How each posted rx buffer is cut into descriptors. */
    enum RxLayout { ONE_BUFFER, HEADER_APART, SCATTERED }

    final VsockDevice device;
    final VsockConfig config;
    /** The product driver under test. */
    final VsockDriver vsock;
    /** Engine-level transport: our own memory, device queues and ring runners; null over vhost-user. */
    private final SharedMemory memory;
    private final DeviceQueue rxDevice;
    private final DeviceQueue txDevice;
    private final RingRunner rxRunner;
    private final RingRunner txRunner;
    private final BackendServer server;
    private final SplittableRandom random;
    /** Packets as the driver's tap saw them, and those no stream took, since the last {@link #poll()}. */
    private final List<VsockPacket> arrived = new ArrayList<>();
    final List<VsockPacket> unclaimed = new ArrayList<>();
    private boolean closed;

    GuestDriver(Path dir, RingKind kind, boolean indirect, int txBufferSize, RxLayout rxLayout, int rxBufferSize,
                long seed) throws IOException {
        this(dir, kind, indirect, txBufferSize, rxLayout, rxBufferSize, seed, VsockDevice.MAX_CONNECTIONS);
    }

    GuestDriver(Path dir, RingKind kind, boolean indirect, int txBufferSize, RxLayout rxLayout, int rxBufferSize,
                long seed, int maxConnections) throws IOException {
        this(new VsockConfig(GUEST_CID, dir.resolve("vhost.sock"), dir.resolve("vm.vsock"), txBufferSize, 1024,
                List.of()), null, kind, indirect, rxLayout, rxBufferSize, seed, maxConnections);
    }

    /** An engine-level guest with its own CID and groups ({@code config}) among {@code siblings}. */
    GuestDriver(VsockConfig config, Siblings siblings, RingKind kind, RxLayout rxLayout, int rxBufferSize, long seed)
            throws IOException {
        this(config, siblings, kind, false, rxLayout, rxBufferSize, seed, VsockDevice.MAX_CONNECTIONS);
    }

    private GuestDriver(VsockConfig config, Siblings siblings, RingKind kind, boolean indirect, RxLayout rxLayout,
                        int rxBufferSize, long seed, int maxConnections) throws IOException {
        this.config = config;
        this.random = new SplittableRandom(seed);
        long features = VirtioFeatures.bit(VirtioFeatures.VERSION_1) | VirtioFeatures.bit(VirtioFeatures.EVENT_IDX)
                | (indirect ? VirtioFeatures.bit(VirtioFeatures.INDIRECT_DESC) : 0)
                | (kind == RingKind.PACKED ? VirtioFeatures.bit(VirtioFeatures.RING_PACKED) : 0);
        int maxIndirect = indirect ? ChainLayout.MAX_PIECES : 0;
        long ringBytes = RingPlacement.plan(kind, QUEUE_SIZE, 0, maxIndirect, 0).totalBytes();
        long txBytes = PacketRings.txAreaBytes(QUEUE_SIZE);
        long rxBytes = PacketRings.rxAreaBytes(QUEUE_SIZE, rxBufferSize);
        this.memory = SharedMemory.create("vsock-guest", 2 * ringBytes + txBytes + rxBytes + 3 * 4096);
        GuestMemory guest = memory.guestMemory(0);
        RingPlacement rxPlan = RingPlacement.plan(kind, QUEUE_SIZE, memory.allocate(ringBytes, 4096), maxIndirect, 0);
        RingPlacement txPlan = RingPlacement.plan(kind, QUEUE_SIZE, memory.allocate(ringBytes, 4096), maxIndirect, 0);
        long txGpa = memory.allocate(txBytes, 4096);
        long rxGpa = memory.allocate(rxBytes, 4096);
        DriverQueue rx = kind.driver("guest-rx", guest, QUEUE_SIZE, rxPlan.rings(), features, rxPlan.indirect());
        DriverQueue tx = kind.driver("guest-tx", guest, QUEUE_SIZE, txPlan.rings(), features, txPlan.indirect());
        this.rxDevice = kind.device("rx", guest, QUEUE_SIZE, rxPlan.rings(), features);
        this.txDevice = kind.device("tx", guest, QUEUE_SIZE, txPlan.rings(), features);
        this.server = null;
        this.device = VsockDevice.open(config, siblings, maxConnections);
        device.featuresAcked(features);
        this.rxRunner = new RingRunner("vsock-rx-worker", VsockDevice.RX_QUEUE, device, rxDevice);
        this.txRunner = new RingRunner("vsock-tx-worker", VsockDevice.TX_QUEUE, device, txDevice);
        device.start(VsockDevice.RX_QUEUE, rxDevice, rxRunner);
        device.start(VsockDevice.TX_QUEUE, txDevice, txRunner);
        rxRunner.begin();
        txRunner.begin();
        DriverRings rings = new EngineRings(rx, tx, memory.segment().asSlice(rxGpa, rxBytes), rxGpa,
                memory.segment().asSlice(txGpa, txBytes), txGpa, features, maxIndirect);
        this.vsock = VsockDriver.over(rings, driverConfig(rxBufferSize).withGuestCid(config.guestCid()), layout(rxLayout));
        watch();
    }

    /**
     * The whole stack: the device served by a {@link BackendServer} on {@code <dir>/vhost.sock}, and
     * the driver connected to it over vhost-user as QEMU would be (only rings 0 and 1, QEMU keeps the
     * event queue). The ring workers are the server's; the driver's CID comes from the config space.
     */
    static GuestDriver overVhostUser(Path dir, RingKind kind) throws IOException {
        return new GuestDriver(dir, kind);
    }

    private GuestDriver(Path dir, RingKind kind) throws IOException {
        this.config = VsockConfig.of(GUEST_CID, dir.resolve("vhost.sock"), dir.resolve("vm.vsock"));
        this.random = new SplittableRandom(1);
        this.memory = null;
        this.rxDevice = null;
        this.txDevice = null;
        this.rxRunner = null;
        this.txRunner = null;
        this.device = VsockDevice.open(config);
        this.server = BackendServer.listen(config.socket(), device);
        this.vsock = VsockDriver.connect(config.socket(), driverConfig(4096).withGuestCid(-1)
                .withPacked(kind == RingKind.PACKED));
        vsock.packets().rxLayout(ChainLayout.HEADER_APART);
        watch();
    }

    private static VsockDriverConfig driverConfig(int rxBufferSize) {
        return VsockDriverConfig.defaults().withQueueSize(QUEUE_SIZE).withRxBufferSize(rxBufferSize)
                .withGuestCid(GUEST_CID).withTimeouts(Duration.ofSeconds(10), Duration.ofSeconds(20), Duration.ofSeconds(2));
    }

    /** Every packet goes to {@link #arrived}; those no stream or listener takes to {@link #unclaimed}, unanswered. */
    private void watch() {
        vsock.tap((header, bytes, offset, length) -> arrived.add(VsockPacket.of(header, bytes, offset, length)));
        vsock.onUnmatched((header, bytes, offset, length) -> unclaimed.add(VsockPacket.of(header, bytes, offset, length)));
    }

    /** Engine level, defaults: no indirect, 64 KiB tx buffer, rx buffers of one 4 KiB descriptor. */
    static GuestDriver of(Path dir, RingKind kind) throws IOException {
        return new GuestDriver(dir, kind, false, VsockConfig.DEFAULT_TX_BUFFER_SIZE, RxLayout.ONE_BUFFER, 4096, 1);
    }

    ChainLayout layout(Split split) {
        return switch (split) {
            case WHOLE -> ChainLayout.WHOLE;
            case HEADER_APART -> ChainLayout.HEADER_APART;
            case HEADER_TORN -> (total, pieces) -> {
                if (total <= VsockPacket.HEADER) {
                    return total > 10 ? fill(pieces, 10, total - 10) : fill(pieces, total);
                }
                return fill(pieces, 10, VsockPacket.HEADER - 10, total - VsockPacket.HEADER);
            };
            case SCATTERED -> (total, pieces) -> cutRandom(total, 8, pieces);
        };
    }

    private ChainLayout layout(RxLayout layout) {
        return switch (layout) {
            case ONE_BUFFER -> ChainLayout.WHOLE;
            case HEADER_APART -> ChainLayout.HEADER_APART;
            case SCATTERED -> (total, pieces) -> cutRandom(total, 6, pieces);
        };
    }

    private static int fill(int[] pieces, int... lengths) {
        System.arraycopy(lengths, 0, pieces, 0, lengths.length);
        return lengths.length;
    }

    /** {@code total} bytes cut at random places into 1 .. {@code maxPieces} non-empty pieces. */
    private int cutRandom(int total, int maxPieces, int[] pieces) {
        int count = Math.min(total, 1 + random.nextInt(maxPieces));
        int[] cuts = random.ints(count - 1, 1, total).sorted().distinct().toArray();
        int last = 0;
        for (int i = 0; i < cuts.length; i++) {
            pieces[i] = cuts[i] - last;
            last = cuts[i];
        }
        pieces[cuts.length] = total - last;
        return cuts.length + 1;
    }

    /** Sends {@code bytes} as one packet (its header may lie), cut into descriptors as {@code split} says. */
    void sendRaw(byte[] bytes, Split split) {
        ChainLayout layout = layout(split);
        deadline(() -> vsock.packets().sendRaw(bytes, layout), "a free tx slot");
    }

    void send(VsockPacket packet, Split split) {
        sendRaw(packet.encode(), split);
    }

    /** Sends a packet from the guest's CID to the host CID. */
    void send(int guestPort, int hostPort, int op, int flags, int bufAlloc, int fwdCnt, byte[] payload, Split split) {
        send(new VsockPacket(GUEST_CID, VsockHeader.HOST_CID, guestPort, hostPort, VsockPacket.STREAM, op, flags,
                bufAlloc, fwdCnt, payload), split);
    }

    /** One round of the driver: the packets the device wrote since the last round, in order. */
    List<VsockPacket> poll() {
        checkWorkers();
        try {
            vsock.poll();
        } catch (VsockException e) {
            throw new AssertionError("driver failed", e);
        }
        List<VsockPacket> seen = List.copyOf(arrived);
        arrived.clear();
        return seen;
    }

    /** Collects whatever arrives for {@code window}: for "nothing else comes" checks. */
    List<VsockPacket> drain(Duration window) {
        List<VsockPacket> seen = new ArrayList<>();
        long end = System.nanoTime() + window.toNanos();
        while (System.nanoTime() < end) {
            List<VsockPacket> now = poll();
            seen.addAll(now);
            if (now.isEmpty()) {
                LockSupport.parkNanos(20_000);
            }
        }
        return seen;
    }

    /** Bytes the rx and tx workers have allocated so far. */
    long[] workerAllocations() {
        if (rxRunner == null) {
            throw new IllegalStateException("the server's workers are not ours to measure");
        }
        return new long[] {rxRunner.allocatedBytes(), txRunner.allocatedBytes()};
    }

    /** GET_CONFIG(0, 8) over vhost-user: the le64 guest_cid. */
    long guestCidFromConfigSpace() {
        byte[] config = vsock.frontend().backend().getConfig(0, 8);
        return java.nio.ByteBuffer.wrap(config).order(java.nio.ByteOrder.LITTLE_ENDIAN).getLong();
    }

    int postedRx() {
        return vsock.packets().postedRx();
    }

    void checkWorkers() {
        for (RingRunner runner : rxRunner == null ? List.<RingRunner>of() : List.of(rxRunner, txRunner)) {
            if (runner.failure() != null) {
                throw new AssertionError("ring worker " + runner.queueIndex() + " threw", runner.failure());
            }
        }
        try {
            vsock.packets().checkRings();
        } catch (VsockException e) {
            throw new AssertionError(e.getMessage(), e);
        }
    }

    static void deadline(java.util.function.BooleanSupplier condition, String what) {
        long end = System.nanoTime() + Duration.ofSeconds(10).toNanos();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > end) {
                throw new AssertionError("timed out waiting for " + what);
            }
            LockSupport.parkNanos(20_000);
        }
    }

    /**
     * Stops the rings and resets the device as the control plane does: at engine level by hand (stop
     * the workers, Backend.stop, publish, Backend.reset); over vhost-user the front-end disconnects
     * and the server does it.
     */
    void resetDevice() throws InterruptedException {
        if (rxRunner == null) {
            vsock.frontend().close();
            return;
        }
        rxRunner.close();
        txRunner.close();
        device.stop(VsockDevice.RX_QUEUE, rxDevice);
        rxDevice.publish();
        device.stop(VsockDevice.TX_QUEUE, txDevice);
        txDevice.publish();
        device.reset();
    }

    @Override
    public void close() throws InterruptedException {
        if (closed) {
            return;
        }
        closed = true;
        try {
            resetDevice();
            checkWorkers();
        } finally {
            vsock.close();
            if (server != null) {
                server.close();
            }
            device.close();
            if (memory != null) {
                memory.close();
            }
        }
    }

    /** Driver queues over our own memfd, served in-process by device queues on the same memory. */
    private record EngineRings(DriverQueue rx, DriverQueue tx, MemorySegment rxData, long rxGpa, MemorySegment txData,
                               long txGpa, long features, int maxIndirect) implements DriverRings {
        @Override
        public DriverQueue queue(int index) {
            return index == RX ? rx : tx;
        }

        @Override
        public MemorySegment data(int index) {
            return index == RX ? rxData : txData;
        }

        @Override
        public long dataGpa(int index) {
            return index == RX ? rxGpa : txGpa;
        }

        /** The ring runners poll (they park 200 µs when idle): publishing is all a kick would add. */
        @Override
        public void publish(int index) {
            queue(index).publish();
        }

        @Override
        public void awaitUsed(int index, long timeoutNanos) {
            LockSupport.parkNanos(Math.min(timeoutNanos, TimeUnit.MICROSECONDS.toNanos(20)));
        }
    }
}
