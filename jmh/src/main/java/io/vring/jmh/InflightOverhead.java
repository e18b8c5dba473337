package io.vring.jmh;

import io.vring.engine.RingKind;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Group;
import org.openjdk.jmh.annotations.GroupThreads;
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
import org.openjdk.jmh.infra.Blackhole;

/**
 * What inflight tracking (vhost-user INFLIGHT_SHMFD) costs the device data path: the
 * {@link RingThroughput} {@code ring} transfer (same driver and device invocations, same 64-byte
 * payload, same pinning), with the device queue untracked ({@code inflight=off}) and tracked
 * ({@code inflight=on}: every polled chain recorded in a memfd inflight region, every publish
 * clearing it in the crash-safe order) in the same run. Features: EVENT_IDX. Read the
 * {@code transfers} secondary metric (elements/s); the ratio of the two rows per ring kind and batch
 * is the overhead.
 */
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(java.util.concurrent.TimeUnit.SECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "--add-exports",
        "java.base/jdk.internal.misc=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow"})
public class InflightOverhead {

    /** One queue, both sides, the device tracked or not. Read-only once set up. */
    @State(Scope.Group)
    public static class TrackedRing {
        @Param({"SPLIT", "PACKED"})
        public RingKind ring;
        @Param({"1", "32"})
        public int batch;
        @Param({"off", "on"})
        public String inflight;

        RingPair pair;

        @Setup(Level.Trial)
        public void open() {
            boolean track = switch (inflight) {
                case "off" -> false;
                case "on" -> true;
                default -> throw new IllegalArgumentException("inflight must be off or on, got " + inflight);
            };
            pair = RingPair.open(ring, RingThroughput.QUEUE_SIZE, RingThroughput.features(ring, "event_idx"), track);
            if (pair.device.isTrackingInflight() != track) {
                throw new IllegalStateException("inflight tracking is " + pair.device.isTrackingInflight());
            }
        }

        @TearDown(Level.Trial)
        public void close() {
            pair.close();
        }
    }

    @Benchmark
    @Group("ring")
    @GroupThreads(1)
    public void driver(TrackedRing r, RingThroughput.RingDriverSide d) {
        RingThroughput.offer(r.pair, r.batch, d);
    }

    @Benchmark
    @Group("ring")
    @GroupThreads(1)
    public void device(TrackedRing r, RingThroughput.RingDeviceSide d, Transfers t, Blackhole bh) {
        t.transfers += RingThroughput.serve(r.pair.device, r.batch, d, bh);
    }
}
