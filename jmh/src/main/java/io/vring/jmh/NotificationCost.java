package io.vring.jmh;

import io.vring.engine.notify.EventFd;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLongArray;

/**
 * What one hand-over between two threads costs, without a ring: a round trip (there and back) is
 * two hand-overs. {@code eventfd}: the benchmark thread signals eventfd A and waits in
 * {@link EventFd#await} on B; the echo thread waits on A and signals B (2 writes, 2 polls, 2 reads
 * per round trip). {@code busy}: the same over two counters 128 bytes apart, release store and
 * acquire spin with {@code Thread.onSpinWait}. Threads pinned to CPU 0 and CPU 1.
 */
@BenchmarkMode(Mode.SampleTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "--add-exports",
        "java.base/jdk.internal.misc=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow"})
public class NotificationCost {

    @State(Scope.Thread)
    public static class EventFds {
        EventFd ping;
        EventFd pong;
        volatile boolean running;
        Thread echo;

        @Setup(Level.Trial)
        public void open() {
            Affinity.pin("ping", Affinity.DRIVER_CPU);
            ping = EventFd.create();
            pong = EventFd.create();
            running = true;
            echo = new Thread(() -> {
                Affinity.pin("eventfd echo", Affinity.DEVICE_CPU);
                while (running) {
                    if (ping.await(100)) {
                        pong.signal();
                    }
                }
            }, "eventfd-echo");
            echo.setDaemon(true);
            echo.start();
        }

        @TearDown(Level.Trial)
        public void close() throws InterruptedException {
            running = false;
            ping.signal();
            echo.join(5_000);
            ping.close();
            pong.close();
        }
    }

    @Benchmark
    public void eventfd(EventFds s) {
        s.ping.signal();
        while (!s.pong.await(100)) {
            // timeout: the echo is late; keep waiting
        }
    }

    @State(Scope.Thread)
    public static class Flags {
        /** Index of the ping counter; the pong counter sits 128 bytes later (adjacent-line prefetch). */
        static final int PING = 0, PONG = 16;
        final AtomicLongArray flags = new AtomicLongArray(32);
        long sequence;
        volatile boolean running;
        Thread echo;

        @Setup(Level.Trial)
        public void open() {
            Affinity.pin("ping", Affinity.DRIVER_CPU);
            running = true;
            echo = new Thread(() -> {
                Affinity.pin("busy echo", Affinity.DEVICE_CPU);
                long seen = 0;
                while (running) {
                    long v = flags.getAcquire(PING);
                    if (v != seen) {
                        seen = v;
                        flags.setRelease(PONG, v);
                    } else {
                        Thread.onSpinWait();
                    }
                }
            }, "busy-echo");
            echo.setDaemon(true);
            echo.start();
        }

        @TearDown(Level.Trial)
        public void close() throws InterruptedException {
            running = false;
            echo.join(5_000);
        }
    }

    @Benchmark
    public long busy(Flags s) {
        long v = ++s.sequence;
        s.flags.setRelease(Flags.PING, v);
        while (s.flags.getAcquire(Flags.PONG) != v) {
            Thread.onSpinWait();
        }
        return v;
    }
}
