package io.vring.jmh;

import io.vring.engine.DeviceQueue;
import io.vring.engine.DriverQueue;
import io.vring.engine.RingKind;
import io.vring.engine.RingPlacement;
import io.vring.engine.VirtioFeatures;
import io.vring.engine.chain.ChainReader;
import io.vring.engine.chain.ChainWriter;
import io.vring.engine.chain.DescriptorChain;
import io.vring.engine.memory.SharedMemory;
import io.vring.engine.notify.EventFd;
import io.vring.engine.notify.EventFdIdleStrategy;
import org.jctools.queues.SpscArrayQueue;
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

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.TimeUnit;

/**
 * Round-trip time of one 64-byte request and its 64-byte reply, with the percentiles (p50, p99,
 * p99.9) JMH's SampleTime mode records in its histogram; vring and a JCTools ping-pong in the same run.
 *
 * <ul>
 *   <li>{@code ring}: one queue. The benchmark thread (driver, CPU 0) copies a 64-byte request into a
 *       readable buffer, adds it and a 64-byte writable reply buffer as one chain, publishes, kicks if
 *       the device asked, and waits for the chain to come back used, then copies the reply out. An echo
 *       thread (device, CPU 1) polls, copies the request out with a ChainReader, writes it back as the
 *       reply with a ChainWriter, {@code addUsed(chain, 64)}, publishes and signals if the driver asked.
 *       {@code wake=busy}: both sides spin ({@code Thread.onSpinWait}), notifications disabled.
 *       {@code wake=eventfd}: both sides sleep on an eventfd when idle through
 *       {@link EventFdIdleStrategy} (enable notifications, fence, re-check, {@code poll(2)}), so every
 *       round trip pays a kick and a call. EVENT_IDX is negotiated.</li>
 *   <li>{@code jctools}: two {@link SpscArrayQueue}s (request, reply) carrying 64-byte {@code byte[]}s;
 *       the benchmark thread fills and offers the request and spins for the reply; the echo thread
 *       spins for the request, copies it into its reply array and offers that. Busy-poll only.</li>
 * </ul>
 */
@BenchmarkMode(Mode.SampleTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "--add-exports",
        "java.base/jdk.internal.misc=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow"})
public class RingLatency {
    static final int QUEUE_SIZE = 256;

    /** A vring queue with an echo device thread. */
    @State(Scope.Thread)
    public static class Ring {
        @Param({"SPLIT", "PACKED"})
        public RingKind ring;
        @Param({"busy", "eventfd"})
        public String wake;

        SharedMemory memory;
        DriverQueue driver;
        DeviceQueue device;
        EventFd kick;
        EventFd call;
        EventFdIdleStrategy driverIdle;
        boolean eventfd;
        long requestGpa;
        long replyGpa;
        MemorySegment request;
        MemorySegment reply;
        MemorySegment source;
        MemorySegment scratch;
        long sequence;
        volatile boolean running;
        Thread echo;

        @Setup(Level.Trial)
        public void open() throws InterruptedException {
            Affinity.pin("driver", Affinity.DRIVER_CPU);
            eventfd = switch (wake) {
                case "busy" -> false;
                case "eventfd" -> true;
                default -> throw new IllegalArgumentException("wake must be busy or eventfd, got " + wake);
            };
            long features = RingThroughput.features(ring, "event_idx");
            RingPlacement plan = RingPlacement.plan(ring, QUEUE_SIZE, 0, 0, 2L * Payload.BYTES);
            memory = SharedMemory.create("vring-latency", plan.totalBytes());
            var guest = memory.guestMemory(0);
            driver = ring.driver("latency-driver", guest, QUEUE_SIZE, plan.rings(), features, null);
            device = ring.device("latency-device", guest, QUEUE_SIZE, plan.rings(), features);
            kick = EventFd.create();
            call = EventFd.create();
            requestGpa = plan.dataGpa();
            replyGpa = requestGpa + Payload.BYTES;
            request = memory.segment().asSlice(requestGpa, Payload.BYTES);
            reply = memory.segment().asSlice(replyGpa, Payload.BYTES);
            source = Arena.ofAuto().allocate(Payload.BYTES, 64);
            scratch = Arena.ofAuto().allocate(Payload.BYTES, 64);
            if (eventfd) {
                driverIdle = EventFdIdleStrategy.forDriver(driver, call);
            } else {
                driver.disableUsedNotification();
                device.disableNotification();
            }
            running = true;
            echo = new Thread(this::echo, "vring-echo-device");
            echo.setDaemon(true);
            echo.start();
        }

        private void echo() {
            Affinity.pin("echo device", Affinity.DEVICE_CPU);
            DeviceQueue q = device;
            EventFdIdleStrategy idle = eventfd ? EventFdIdleStrategy.forDevice(q, kick) : null;
            ChainReader reader = new ChainReader();
            ChainWriter writer = new ChainWriter();
            MemorySegment buffer = Arena.ofAuto().allocate(Payload.BYTES, 64);
            while (running) {
                DescriptorChain chain = q.poll();
                if (chain == null) {
                    if (idle != null) {
                        idle.idle();
                    } else {
                        Thread.onSpinWait();
                    }
                    continue;
                }
                reader.reset(chain).read(buffer, 0, Payload.BYTES);
                writer.reset(chain).write(buffer, 0, Payload.BYTES);
                q.addUsed(chain, Payload.BYTES);
                q.publish();
                if (q.needsNotification()) {
                    call.signal();
                }
            }
        }

        @TearDown(Level.Trial)
        public void close() throws InterruptedException {
            running = false;
            kick.signal();
            echo.join(5_000);
            boolean broken = driver.isBroken() || device.isBroken();
            String why = "driver " + driver.brokenReason() + ", device " + device.brokenReason();
            kick.close();
            call.close();
            memory.close();
            if (broken) {
                throw new IllegalStateException("queue broke during the run: " + why);
            }
        }
    }

    @Benchmark
    public long ring(Ring s) {
        DriverQueue q = s.driver;
        Payload.stamp(s.source, ++s.sequence);
        MemorySegment.copy(s.source, 0, s.request, 0, Payload.BYTES);
        q.addReadable(s.requestGpa, Payload.BYTES);
        q.addWritable(s.replyGpa, Payload.BYTES);
        q.submit();
        q.publish();
        if (q.needsKick()) {
            s.kick.signal();
        }
        if (s.eventfd) {
            while (q.pollUsed() < 0) {
                s.driverIdle.idle();
            }
        } else {
            while (q.pollUsed() < 0) {
                Thread.onSpinWait();
            }
        }
        MemorySegment.copy(s.reply, 0, s.scratch, 0, Payload.BYTES);
        return Payload.sequence(s.scratch);
    }

    /** Two JCTools queues with an echo thread. */
    @State(Scope.Thread)
    public static class Jctools {
        SpscArrayQueue<byte[]> requests;
        SpscArrayQueue<byte[]> replies;
        byte[] request;
        byte[] scratch;
        long sequence;
        volatile boolean running;
        Thread echo;

        @Setup(Level.Trial)
        public void open() {
            Affinity.pin("ping", Affinity.DRIVER_CPU);
            requests = new SpscArrayQueue<>(QUEUE_SIZE);
            replies = new SpscArrayQueue<>(QUEUE_SIZE);
            request = new byte[Payload.BYTES];
            scratch = new byte[Payload.BYTES];
            running = true;
            echo = new Thread(this::echo, "jctools-echo");
            echo.setDaemon(true);
            echo.start();
        }

        private void echo() {
            Affinity.pin("echo", Affinity.DEVICE_CPU);
            byte[] reply = new byte[Payload.BYTES];
            byte[] buffer = new byte[Payload.BYTES];
            while (running) {
                byte[] in = requests.poll();
                if (in == null) {
                    Thread.onSpinWait();
                    continue;
                }
                System.arraycopy(in, 0, buffer, 0, Payload.BYTES);
                System.arraycopy(buffer, 0, reply, 0, Payload.BYTES);
                replies.offer(reply);
            }
        }

        @TearDown(Level.Trial)
        public void close() throws InterruptedException {
            running = false;
            echo.join(5_000);
        }
    }

    @Benchmark
    public long jctools(Jctools s) {
        Payload.BYTES_LONG.set(s.request, 0, ++s.sequence);
        s.requests.offer(s.request);
        byte[] reply;
        while ((reply = s.replies.poll()) == null) {
            Thread.onSpinWait();
        }
        System.arraycopy(reply, 0, s.scratch, 0, Payload.BYTES);
        return (long) Payload.BYTES_LONG.get(s.scratch, 0);
    }
}
