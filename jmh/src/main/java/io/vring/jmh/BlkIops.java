package io.vring.jmh;

import io.vring.protocol.BackendClient;
import io.vring.protocol.FrontendDevice;
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

import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * virtio-blk IOPS: 4 KiB random reads or writes at queue depth 1 and 32 from one Java front-end
 * ({@link FrontendDevice} + {@link BlkDriver}, the benchmark thread pinned to the driver CPU),
 * against our {@code vring blk} ({@code backend=vring}) and qemu-storage-daemon
 * ({@code backend=qsd}) in the same run, each over its own 64 MiB image file in /dev/shm made the
 * same way ({@link ShmImage}), each in its own process pinned to the device CPU
 * ({@link ExternalBackend}), both started in the trial's set-up and stopped in its tear-down.
 *
 * <p>One operation is one request completed: the invocation takes the next completion (sleeping
 * on the call eventfd if none is there), checks its status, and puts a new request for a random
 * block in the freed slot, so {@code depth} requests are always in flight; the score is IOPS. The
 * blocks come from a seeded {@link SplittableRandom} (seed {@value #SEED}), the same sequence for
 * both back-ends.
 */
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 2, time = 2)
@Measurement(iterations = 4, time = 2)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "--add-exports",
        "java.base/jdk.internal.misc=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow"})
@State(Scope.Thread)
public class BlkIops {
    static final long SEED = 0x7b1c_10b5L;
    static final long IMAGE_BYTES = 64L << 20;
    /** A request not done in this long means the back-end is stuck: the benchmark fails. */
    static final long TIMEOUT_MILLIS = 5_000;

    @Param({"vring", "qsd"})
    public String backend;

    @Param({"1", "32"})
    public int depth;

    @Param({"read", "write"})
    public String op;

    private ShmImage image;
    private ExternalBackend process;
    private FrontendDevice device;
    private BlkDriver driver;
    private SplittableRandom random;
    private boolean write;
    private long blocks;

    @Setup(Level.Trial)
    public void open() {
        Affinity.pin("front-end", Affinity.DRIVER_CPU);
        write = switch (op) {
            case "read" -> false;
            case "write" -> true;
            default -> throw new IllegalArgumentException("op " + op + ", expected read or write");
        };
        image = ShmImage.create(backend, IMAGE_BYTES, SEED);
        blocks = image.sizeBytes() / BlkDriver.BLOCK;
        try {
            process = switch (backend) {
                case "vring" -> ExternalBackend.vringBlk(image.path());
                case "qsd" -> ExternalBackend.qemuStorageDaemon(image.path());
                default -> throw new IllegalArgumentException("backend " + backend + ", expected vring or qsd");
            };
            device = FrontendDevice.start(BackendClient.connect(process.socket()), BlkDriver.config(depth));
            driver = new BlkDriver(device.ring(0), depth);
            random = new SplittableRandom(SEED);
            for (int slot = 0; slot < depth; slot++) {
                driver.submit(slot, write, random.nextLong(blocks));
            }
            driver.publish();
        } catch (RuntimeException e) {
            close();
            throw e;
        }
    }

    @Benchmark
    public int request() {
        int slot = driver.complete(TIMEOUT_MILLIS);
        driver.submit(slot, write, random.nextLong(blocks));
        driver.publish();
        return slot;
    }

    /** Lets what is in flight finish, then disconnects and stops the back-end. */
    @TearDown(Level.Trial)
    public void close() {
        try {
            while (driver != null && driver.inFlight() > 0) {
                driver.complete(TIMEOUT_MILLIS);
            }
        } finally {
            if (device != null) {
                device.close();
            }
            if (process != null) {
                process.close();
            }
            if (image != null) {
                image.close();
            }
        }
    }
}
