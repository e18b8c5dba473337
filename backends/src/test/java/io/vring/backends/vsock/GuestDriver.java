package io.vring.backends.vsock;

import io.vring.engine.DeviceQueue;
import io.vring.engine.DriverQueue;
import io.vring.engine.RingKind;
import io.vring.engine.RingPlacement;
import io.vring.engine.VirtioFeatures;
import io.vring.engine.memory.GuestMemory;
import io.vring.engine.memory.SharedMemory;
import io.vring.protocol.BackendClient;
import io.vring.protocol.BackendServer;
import io.vring.protocol.FrontendConfig;
import io.vring.protocol.FrontendDevice;
import io.vring.protocol.FrontendRing;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.locks.LockSupport;

/**
 * The guest's virtio-vsock driver in a test: driver queues over a memfd that a {@link VsockDevice}
 * serves through device queues on the same memory, run by {@link RingRunner} threads (rx and tx on
 * different threads, as the control plane runs them). The test thread owns the driver side: it
 * posts rx buffers, sends packets on tx split over descriptors as each test asks, and collects
 * what the device wrote.
 */
final class GuestDriver implements AutoCloseable {
    static final long GUEST_CID = 3;
    static final int QUEUE_SIZE = 128;
    private static final int TX_SLOT = Packet.HEADER + 64 * 1024 + 64 * 16;
    private static final int GAP = 64;
    private static final long TX_AREA = (long) QUEUE_SIZE * TX_SLOT;

    /** How a tx packet is cut into descriptors. */
    enum Split { WHOLE, HEADER_APART, HEADER_TORN, SCATTERED }

    /** How each posted rx buffer is cut into descriptors. */
    enum RxLayout { ONE_BUFFER, HEADER_APART, SCATTERED }

    final VsockDevice device;
    final VsockConfig config;
    /** Engine-level transport: our own memory, device queues and ring runners; null over a front-end. */
    private final SharedMemory memory;
    private final DeviceQueue rxDevice;
    private final DeviceQueue txDevice;
    private final RingRunner rxRunner;
    private final RingRunner txRunner;
    /** Control-plane transport: a FrontendDevice talking to a BackendServer; null at engine level. */
    private final FrontendDevice frontend;
    private final DriverQueue rx;
    private final DriverQueue tx;
    /** Where the tx and rx slots live: a segment and the GPA of its first byte. */
    private final MemorySegment txArea;
    private final long txAreaGpa;
    private final MemorySegment rxArea;
    private final long rxAreaGpa;
    private final boolean indirect;
    private final RxLayout rxLayout;
    private final int rxBufferSize;
    private final SplittableRandom random;
    private final long txSlots;
    private final long rxSlots;
    private final BackendServer server;
    private final ArrayDeque<Integer> freeTx = new ArrayDeque<>();
    private final ArrayDeque<Integer> freeRx = new ArrayDeque<>();
    private final Map<Integer, Integer> txInFlight = new HashMap<>();
    private final Map<Integer, long[][]> rxInFlight = new HashMap<>();
    private final Map<Integer, Integer> rxSlotOf = new HashMap<>();
    private boolean closed;

    GuestDriver(Path dir, RingKind kind, boolean indirect, int txBufferSize, RxLayout rxLayout, int rxBufferSize,
                long seed) throws IOException {
        this(dir, kind, indirect, txBufferSize, rxLayout, rxBufferSize, seed, VsockDevice.MAX_CONNECTIONS);
    }

    GuestDriver(Path dir, RingKind kind, boolean indirect, int txBufferSize, RxLayout rxLayout, int rxBufferSize,
                long seed, int maxConnections) throws IOException {
        this(dir, new VsockConfig(GUEST_CID, dir.resolve("vhost.sock"), dir.resolve("vm.vsock"), txBufferSize,
                1024, List.of()), null, kind, indirect, rxLayout, rxBufferSize, seed, maxConnections);
    }

    /** A guest with its own CID and groups ({@code config}) among {@code siblings}. */
    GuestDriver(Path dir, VsockConfig config, Siblings siblings, RingKind kind, RxLayout rxLayout, int rxBufferSize,
                long seed) throws IOException {
        this(dir, config, siblings, kind, false, rxLayout, rxBufferSize, seed, VsockDevice.MAX_CONNECTIONS);
    }

    private GuestDriver(Path dir, VsockConfig config, Siblings siblings, RingKind kind, boolean indirect,
                        RxLayout rxLayout, int rxBufferSize, long seed, int maxConnections) throws IOException {
        this.config = config;
        this.indirect = indirect;
        this.rxLayout = rxLayout;
        this.rxBufferSize = rxBufferSize;
        this.random = new SplittableRandom(seed);
        long features = VirtioFeatures.bit(VirtioFeatures.VERSION_1) | VirtioFeatures.bit(VirtioFeatures.EVENT_IDX)
                | (indirect ? VirtioFeatures.bit(VirtioFeatures.INDIRECT_DESC) : 0)
                | (kind == RingKind.PACKED ? VirtioFeatures.bit(VirtioFeatures.RING_PACKED) : 0);
        int maxIndirect = indirect ? 16 : 0;
        RingPlacement sizing = RingPlacement.plan(kind, QUEUE_SIZE, 0, maxIndirect, 0);
        long ringBytes = sizing.totalBytes();
        this.memory = SharedMemory.create("vsock-guest", 2 * ringBytes + TX_AREA + rxArea(rxBufferSize) + 3 * 4096);
        GuestMemory guest = memory.guestMemory(0);
        RingPlacement rxPlan = RingPlacement.plan(kind, QUEUE_SIZE, memory.allocate(ringBytes, 4096), maxIndirect, 0);
        RingPlacement txPlan = RingPlacement.plan(kind, QUEUE_SIZE, memory.allocate(ringBytes, 4096), maxIndirect, 0);
        this.txArea = memory.segment();
        this.txAreaGpa = 0;
        this.rxArea = memory.segment();
        this.rxAreaGpa = 0;
        this.txSlots = memory.allocate(TX_AREA, 4096);
        this.rxSlots = memory.allocate(rxArea(rxBufferSize), 4096);
        this.rx = kind.driver("guest-rx", guest, QUEUE_SIZE, rxPlan.rings(), features, rxPlan.indirect());
        this.tx = kind.driver("guest-tx", guest, QUEUE_SIZE, txPlan.rings(), features, txPlan.indirect());
        this.rxDevice = kind.device("rx", guest, QUEUE_SIZE, rxPlan.rings(), features);
        this.txDevice = kind.device("tx", guest, QUEUE_SIZE, txPlan.rings(), features);
        this.frontend = null;
        this.server = null;
        freeAllSlots();
        this.device = VsockDevice.open(config, siblings, maxConnections);
        device.featuresAcked(features);
        this.rxRunner = new RingRunner("vsock-rx-worker", VsockDevice.RX_QUEUE, device, rxDevice);
        this.txRunner = new RingRunner("vsock-tx-worker", VsockDevice.TX_QUEUE, device, txDevice);
        device.start(VsockDevice.RX_QUEUE, rxDevice, rxRunner);
        device.start(VsockDevice.TX_QUEUE, txDevice, txRunner);
        rxRunner.begin();
        txRunner.begin();
        postRx();
    }

    /**
     * The whole stack: the device served by a {@link BackendServer} on {@code <dir>/vhost.sock}, and a
     * {@link FrontendDevice} that sets up memory and the rx and tx rings over vhost-user as QEMU does
     * (only rings 0 and 1, QEMU keeps the event queue). The ring workers are the server's.
     */
    static GuestDriver overVhostUser(Path dir, RingKind kind) throws IOException {
        return new GuestDriver(dir, kind);
    }

    private GuestDriver(Path dir, RingKind kind) throws IOException {
        this.config = VsockConfig.of(GUEST_CID, dir.resolve("vhost.sock"), dir.resolve("vm.vsock"));
        this.indirect = false;
        this.rxLayout = RxLayout.HEADER_APART;
        this.rxBufferSize = 4096;
        this.random = new SplittableRandom(1);
        this.memory = null;
        this.rxDevice = null;
        this.txDevice = null;
        this.rxRunner = null;
        this.txRunner = null;
        this.device = VsockDevice.open(config);
        this.server = BackendServer.listen(config.socket(), device);
        FrontendConfig frontendConfig = FrontendConfig.of(2, QUEUE_SIZE).withDataBytesPerRing(TX_AREA);
        this.frontend = FrontendDevice.start(BackendClient.connect(config.socket()),
                kind == RingKind.PACKED ? frontendConfig.packed() : frontendConfig);
        FrontendRing rxRing = frontend.ring(VsockDevice.RX_QUEUE);
        FrontendRing txRing = frontend.ring(VsockDevice.TX_QUEUE);
        this.rx = rxRing.queue();
        this.tx = txRing.queue();
        this.rxArea = rxRing.data();
        this.rxAreaGpa = rxRing.dataGpa();
        this.txArea = txRing.data();
        this.txAreaGpa = txRing.dataGpa();
        this.rxSlots = rxAreaGpa;
        this.txSlots = txAreaGpa;
        freeAllSlots();
        postRx();
    }

    private static long rxArea(int rxBufferSize) {
        return (long) QUEUE_SIZE * (rxBufferSize + 16L * GAP);
    }

    private void freeAllSlots() {
        for (int i = 0; i < QUEUE_SIZE; i++) {
            freeTx.add(i);
            freeRx.add(i);
        }
    }

    /** Engine level, defaults: no indirect, 64 KiB tx buffer, rx buffers of one 4 KiB descriptor. */
    static GuestDriver of(Path dir, RingKind kind) throws IOException {
        return new GuestDriver(dir, kind, false, VsockConfig.DEFAULT_TX_BUFFER_SIZE, RxLayout.ONE_BUFFER, 4096, 1);
    }

    /** Sends one packet whose header says {@code len}, cut into descriptors as {@code split} says. */
    void sendRaw(byte[] bytes, Split split) {
        int[] pieces = cut(bytes.length, split);
        deadline(() -> {
            reclaimTx();
            return !freeTx.isEmpty() && tx.freeDescriptors() >= (indirect ? 1 : pieces.length);
        }, "a free tx slot");
        int slot = freeTx.pop();
        long gpa = txSlots + (long) slot * TX_SLOT;
        int offset = 0;
        for (int piece : pieces) {
            MemorySegment.copy(bytes, offset, txArea, ValueLayout.JAVA_BYTE, gpa - txAreaGpa, piece);
            tx.addReadable(gpa, piece);
            gpa += piece + GAP;
            offset += piece;
        }
        int id = indirect && pieces.length <= 16 ? tx.submitIndirect() : tx.submit();
        if (id < 0) {
            throw new AssertionError("tx ring refused a chain of " + pieces.length + " descriptors");
        }
        txInFlight.put(id, slot);
        publish(VsockDevice.TX_QUEUE, tx);
    }

    void send(Packet packet, Split split) {
        sendRaw(packet.encode(), split);
    }

    /** Sends a packet from the guest's CID to the host CID. */
    void send(int guestPort, int hostPort, int op, int flags, int bufAlloc, int fwdCnt, byte[] payload, Split split) {
        send(new Packet(GUEST_CID, VsockHeader.HOST_CID, guestPort, hostPort, Packet.STREAM, op, flags, bufAlloc,
                fwdCnt, payload), split);
    }

    /** The next packet the device wrote to rx, or null if none is there now. Re-posts the buffer. */
    Packet poll() {
        checkWorkers();
        int id = rx.pollUsed();
        if (id < 0) {
            return null;
        }
        int used = rx.usedLength();
        long[][] pieces = rxInFlight.remove(id);
        byte[] bytes = new byte[rxBufferSize];
        int offset = 0;
        for (long[] piece : pieces) {
            int n = (int) Math.min(piece[1], used - offset);
            if (n <= 0) {
                break;
            }
            MemorySegment.copy(rxArea, ValueLayout.JAVA_BYTE, piece[0] - rxAreaGpa, bytes, offset, n);
            offset += n;
        }
        freeRx.push(rxSlotOf.remove(id));
        postRx();
        return Packet.decode(bytes, used);
    }

    /** Waits for the next packet. */
    Packet next(Duration timeout) {
        long end = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < end) {
            Packet packet = poll();
            if (packet != null) {
                return packet;
            }
            LockSupport.parkNanos(20_000);
        }
        throw new AssertionError("no rx packet within " + timeout);
    }

    /** Collects whatever arrives for {@code window}: for "nothing else comes" checks. */
    List<Packet> drain(Duration window) {
        List<Packet> seen = new ArrayList<>();
        long end = System.nanoTime() + window.toNanos();
        while (System.nanoTime() < end) {
            Packet packet = poll();
            if (packet != null) {
                seen.add(packet);
            } else {
                LockSupport.parkNanos(20_000);
            }
        }
        return seen;
    }

    /** Posts device-writable buffers until the ring or the slots run out. */
    void postRx() {
        while (!freeRx.isEmpty()) {
            int[] pieces = rxPieces();
            if (rx.freeDescriptors() < (indirect ? 1 : pieces.length)) {
                break;
            }
            int slot = freeRx.pop();
            long gpa = rxSlots + (long) slot * (rxBufferSize + 16L * GAP);
            long[][] placed = new long[pieces.length][];
            for (int i = 0; i < pieces.length; i++) {
                placed[i] = new long[] {gpa, pieces[i]};
                rx.addWritable(gpa, pieces[i]);
                gpa += pieces[i] + GAP;
            }
            int id = indirect && pieces.length <= 16 ? rx.submitIndirect() : rx.submit();
            if (id < 0) {
                throw new AssertionError("rx ring refused a chain");
            }
            rxInFlight.put(id, placed);
            rxSlotOf.put(id, slot);
        }
        publish(VsockDevice.RX_QUEUE, rx);
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
        byte[] config = frontend.backend().getConfig(0, 8);
        return java.nio.ByteBuffer.wrap(config).order(java.nio.ByteOrder.LITTLE_ENDIAN).getLong();
    }

    /** Publishes; over vhost-user also kicks the back-end's worker if it asked for kicks. */
    private void publish(int index, DriverQueue queue) {
        if (frontend != null) {
            frontend.ring(index).publish();
        } else {
            queue.publish();
        }
    }

    int postedRx() {
        return rxInFlight.size();
    }

    private int[] rxPieces() {
        return switch (rxLayout) {
            case ONE_BUFFER -> new int[] {rxBufferSize};
            case HEADER_APART -> new int[] {Packet.HEADER, rxBufferSize - Packet.HEADER};
            case SCATTERED -> cutRandom(rxBufferSize, 6);
        };
    }

    private int[] cut(int total, Split split) {
        if (total <= Packet.HEADER) {
            return split == Split.HEADER_TORN && total > 10 ? new int[] {10, total - 10} : new int[] {total};
        }
        return switch (split) {
            case WHOLE -> new int[] {total};
            case HEADER_APART -> new int[] {Packet.HEADER, total - Packet.HEADER};
            case HEADER_TORN -> new int[] {10, Packet.HEADER - 10, total - Packet.HEADER};
            case SCATTERED -> cutRandom(total, 8);
        };
    }

    /** {@code total} bytes cut at random places into 1 .. {@code maxPieces} non-empty pieces. */
    private int[] cutRandom(int total, int maxPieces) {
        int pieces = Math.min(total, 1 + random.nextInt(maxPieces));
        int[] cuts = random.ints(pieces - 1, 1, total).sorted().distinct().toArray();
        int[] lengths = new int[cuts.length + 1];
        int last = 0;
        for (int i = 0; i < cuts.length; i++) {
            lengths[i] = cuts[i] - last;
            last = cuts[i];
        }
        lengths[cuts.length] = total - last;
        return lengths;
    }

    private void reclaimTx() {
        for (int id; (id = tx.pollUsed()) >= 0; ) {
            freeTx.push(txInFlight.remove(id));
        }
    }

    void checkWorkers() {
        for (RingRunner runner : rxRunner == null ? List.<RingRunner>of() : List.of(rxRunner, txRunner)) {
            if (runner.failure() != null) {
                throw new AssertionError("ring worker " + runner.queueIndex() + " threw", runner.failure());
            }
        }
        if (rx.isBroken() || tx.isBroken()) {
            throw new AssertionError("the device broke a ring: " + rx.brokenReason() + " / " + tx.brokenReason());
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
        if (frontend != null) {
            frontend.close();
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
            if (server != null) {
                server.close();
            }
            device.close();
            if (memory != null) {
                memory.close();
            }
        }
    }
}
