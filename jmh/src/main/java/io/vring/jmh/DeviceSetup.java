package io.vring.jmh;

import io.vring.engine.DriverQueue;
import io.vring.protocol.BackendClient;
import io.vring.protocol.FrontendConfig;
import io.vring.protocol.FrontendDevice;
import io.vring.protocol.FrontendRing;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.lang.foreign.ValueLayout;
import java.util.concurrent.TimeUnit;

/**
 * Control-plane set-up time: one sample is a whole device life as QEMU runs it: connect to the
 * back-end's socket, {@link FrontendDevice#start} (GET_FEATURES, protocol features, queue number,
 * memory slots, back-end channel, SET_OWNER, SET_FEATURES, status, memory table, per ring NUM /
 * BASE / ADDR / CALL / ERR / KICK, ENABLE, DRIVER_OK: the rings run), one request through ring
 * and back-end until it is used, then disconnect. SampleTime gives p50/p99.
 *
 * <p>Back-ends, each in its own process ({@link ExternalBackend}) started in the trial's set-up:
 * <ul>
 *   <li>{@code vring-blk}: {@code vring blk} on a 64 MiB /dev/shm image; the request is a 4 KiB read.
 *   <li>{@code qsd-blk}: qemu-storage-daemon's vhost-user-blk export of an equal image, the same
 *       front-end and request: the peer of {@code vring-blk}.
 *   <li>{@code vring-rng}: {@code vring rng}; the request asks 64 bytes of entropy.
 *   <li>{@code dpdk-net}: DPDK testpmd's net_vhost (rxonly): two rings; the request is one 60-byte
 *       frame on the TX ring. A different device, so a reference point, not a like-for-like peer.
 * </ul>
 *
 * <p>The back-end tears the previous session down after our disconnect while we connect again: a
 * back-end slow to clean up shows in the next sample, the same for every back-end.
 *
 * <p><b>Warm back-ends.</b> A set-up is rare per process, so in a short run a JVM back-end would be
 * measured while its session code is still interpreted (a smoke run with 1 s of warm-up gave vring
 * rng a p50 of 27 ms; with 9 s, 4.7 ms). The trial's set-up therefore runs {@value #UNTIMED_CYCLES}
 * untimed cycles against every back-end, C ones included, before JMH's own warm-up: what is
 * measured is a long-running daemon accepting one more front-end.
 */
@BenchmarkMode(Mode.SampleTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 2, time = 2)
@Measurement(iterations = 4, time = 2)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "--add-exports",
        "java.base/jdk.internal.misc=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow"})
@State(Scope.Thread)
public class DeviceSetup {
    static final long TIMEOUT_MILLIS = 5_000;
    /** virtio_net_hdr_mrg_rxbuf with VERSION_1. */
    static final int NET_HEADER = 12;
    /** A minimal Ethernet frame (no FCS). */
    static final int FRAME = 60;
    static final int ENTROPY_BYTES = 64;
    /** Cycles each back-end serves before JMH's warm-up starts. */
    static final int UNTIMED_CYCLES = 300;

    @Param({"vring-blk", "qsd-blk", "vring-rng", "dpdk-net"})
    public String backend;

    private ShmImage image;
    private ExternalBackend process;
    private FrontendConfig config;

    @Setup(Level.Trial)
    public void open() {
        Affinity.pin("front-end", Affinity.DRIVER_CPU);
        try {
            switch (backend) {
                case "vring-blk", "qsd-blk" -> {
                    image = ShmImage.create(backend, BlkIops.IMAGE_BYTES, BlkIops.SEED);
                    process = backend.equals("vring-blk") ? ExternalBackend.vringBlk(image.path())
                            : ExternalBackend.qemuStorageDaemon(image.path());
                    config = BlkDriver.config(1);
                }
                case "vring-rng" -> {
                    process = ExternalBackend.vringRng();
                    config = FrontendConfig.of(1, 256);
                }
                case "dpdk-net" -> {
                    process = ExternalBackend.dpdkTestpmd();
                    config = FrontendConfig.of(2, 256);
                }
                default -> throw new IllegalArgumentException("backend " + backend
                        + ", expected vring-blk, qsd-blk, vring-rng or dpdk-net");
            }
            for (int i = 0; i < UNTIMED_CYCLES; i++) {
                connectStartRequestClose();
            }
        } catch (RuntimeException e) {
            close();
            throw e;
        }
    }

    /** Connect, start, one request used, disconnect; returns the request's used length. */
    @Benchmark
    public int connectStartRequestClose() {
        try (FrontendDevice device = FrontendDevice.start(BackendClient.connect(process.socket()), config)) {
            return switch (backend) {
                case "vring-blk", "qsd-blk" -> blkRead(device);
                case "vring-rng" -> entropy(device.ring(0));
                default -> frame(device.ring(1));
            };
        }
    }

    private static int blkRead(FrontendDevice device) {
        BlkDriver driver = new BlkDriver(device.ring(0), 1);
        driver.submit(0, false, 0);
        driver.publish();
        return driver.complete(TIMEOUT_MILLIS);
    }

    private static int entropy(FrontendRing ring) {
        ring.queue().addWritable(ring.dataGpa(), ENTROPY_BYTES);
        return submitAndAwait(ring);
    }

    /** A broadcast frame from 02:00:00:00:00:01, type IPv4, behind a zeroed virtio-net header. */
    private static int frame(FrontendRing ring) {
        ring.data().asSlice(0, NET_HEADER + FRAME).fill((byte) 0);
        for (int i = 0; i < 6; i++) {
            ring.data().set(ValueLayout.JAVA_BYTE, NET_HEADER + i, (byte) 0xff);
        }
        ring.data().set(ValueLayout.JAVA_BYTE, NET_HEADER + 6, (byte) 0x02);
        ring.data().set(ValueLayout.JAVA_BYTE, NET_HEADER + 11, (byte) 0x01);
        ring.data().set(ValueLayout.JAVA_BYTE, NET_HEADER + 12, (byte) 0x08);
        ring.queue().addReadable(ring.dataGpa(), NET_HEADER + FRAME);
        return submitAndAwait(ring);
    }

    private static int submitAndAwait(FrontendRing ring) {
        DriverQueue queue = ring.queue();
        if (queue.submit() < 0) {
            throw new IllegalStateException("a fresh ring has no room");
        }
        ring.publish();
        if (!ring.awaitUsed(TIMEOUT_MILLIS)) {
            throw new IllegalStateException("the back-end used nothing within " + TIMEOUT_MILLIS + " ms");
        }
        queue.pollUsed();
        return queue.usedLength();
    }

    @TearDown(Level.Trial)
    public void close() {
        if (process != null) {
            process.close();
        }
        if (image != null) {
            image.close();
        }
    }
}
