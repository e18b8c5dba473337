package io.vring.jmh;

import io.vring.engine.DeviceQueue;
import io.vring.engine.DriverQueue;
import io.vring.engine.RingKind;
import io.vring.engine.VirtioFeatures;
import io.vring.engine.chain.ChainReader;
import io.vring.engine.chain.DescriptorChain;
import org.agrona.concurrent.MessageHandler;
import org.agrona.concurrent.UnsafeBuffer;
import org.agrona.concurrent.ringbuffer.OneToOneRingBuffer;
import org.agrona.concurrent.ringbuffer.RingBufferDescriptor;
import org.jctools.queues.SpscArrayQueue;
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

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.util.concurrent.TimeUnit;

/**
 * Elements per second from one producer thread to one consumer thread, busy-polling, for a vring
 * queue and for its peers in the same run.
 *
 * <p><b>The transfer</b> (see {@link Payload}): every element carries 64 bytes that the producer
 * copies into the shared buffer and the consumer copies out and reads.
 * <ul>
 *   <li>{@code ring}: the driver thread owns a pool of {@value #QUEUE_SIZE} 64-byte buffers in the
 *       queue's shared memory. Per invocation it collects used chains ({@code pollUsed}, returning their
 *       buffers to the pool) when fewer than {@code batch} buffers are free, then fills up to
 *       {@code batch} free buffers, adds each as one readable descriptor ({@code addReadable} +
 *       {@code submit}), and publishes once. The device thread polls up to {@code batch} chains,
 *       copies each chain's 64 bytes out with a {@link ChainReader}, stages a used entry
 *       ({@code addUsed(chain, 0)}: no writable part), then publishes once. Both sides poll (busy-poll,
 *       notifications disabled) and neither has an eventfd, so neither asks whether the other wants
 *       a notification: what {@code RingWorker} and {@code FrontendRing} do in busy-poll mode (no kick
 *       or call fd). The price of that check, a full fence per publication, is in docs/PERFORMANCE.md
 *       (tuning record "notification checks") and in {@link NotificationCost}. Queue size
 *       {@value #QUEUE_SIZE}.</li>
 *   <li>{@code jctools}: {@link SpscArrayQueue} of capacity {@value #QUEUE_SIZE} carrying references to
 *       pooled {@code byte[64]} slots (pool of twice the capacity, so the producer never writes a slot
 *       the consumer may still read); the producer fills the next slot and offers it, up to
 *       {@code batch} per invocation; the consumer polls up to {@code batch} and copies each slot out.</li>
 *   <li>{@code agrona}: {@link OneToOneRingBuffer} of 32 KiB (455 records of 64 + 8 header bytes):
 *       {@code write} of a 64-byte message, up to {@code batch} per invocation; {@code read(handler, batch)}
 *       whose handler copies the 64 bytes out.</li>
 * </ul>
 * A producer that finds no room returns at once (never blocks), so neither side hangs when the other
 * stops at the end of an iteration. The figure is the consumer's {@code transfers} counter per
 * second; the primary score (invocations of both methods) is not comparable between groups.
 * Driver/producer thread pinned to CPU 0, device/consumer to CPU 1 ({@link Affinity}). Each side keeps
 * its mutable state in its own thread-scoped state (JMH pads those), so no side pays false sharing
 * with the other beyond what the queue itself shares.
 */
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "--add-exports",
        "java.base/jdk.internal.misc=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow"})
public class RingThroughput {
    /** Queue size of the vring queue and capacity of the JCTools queue. */
    public static final int QUEUE_SIZE = 256;

    /** Maps the {@code features} parameter to feature bits (VERSION_1 always, RING_PACKED for packed). */
    static long features(RingKind kind, String spec) {
        long f = VirtioFeatures.bit(VirtioFeatures.VERSION_1);
        if (kind == RingKind.PACKED) {
            f |= VirtioFeatures.bit(VirtioFeatures.RING_PACKED);
        }
        for (String part : spec.split("\\+")) {
            switch (part) {
                case "none" -> { }
                case "event_idx" -> f |= VirtioFeatures.bit(VirtioFeatures.EVENT_IDX);
                case "in_order" -> f |= VirtioFeatures.bit(VirtioFeatures.IN_ORDER);
                default -> throw new IllegalArgumentException("unknown feature '" + part + "' in " + spec);
            }
        }
        return f;
    }

    /** One queue, both sides, in memfd shared memory at GPA 0. Read-only once set up. */
    @State(Scope.Group)
    public static class Ring {
        @Param({"SPLIT", "PACKED"})
        public RingKind ring;
        @Param({"1", "8", "32"})
        public int batch;
        @Param({"none", "event_idx", "in_order", "event_idx+in_order"})
        public String features;

        RingPair pair;

        @Setup(Level.Trial)
        public void open() {
            pair = RingPair.open(ring, QUEUE_SIZE, features(ring, features), false);
        }

        @TearDown(Level.Trial)
        public void close() {
            pair.close();
        }
    }

    /**
     * The driver thread's private state (JMH pads thread states, so none of it shares a line with
     * the device's): its buffer pool and the chain id to buffer map.
     */
    @State(Scope.Thread)
    public static class RingDriverSide {
        MemorySegment source;
        int[] freeSlots;
        int freeCount;
        int[] slotOfId;
        long sequence;

        @Setup(Level.Trial)
        public void open() {
            Affinity.pin("driver", Affinity.DRIVER_CPU);
            source = Arena.ofAuto().allocate(Payload.BYTES, 64);
            freeSlots = new int[QUEUE_SIZE];
            for (int i = 0; i < QUEUE_SIZE; i++) {
                freeSlots[i] = QUEUE_SIZE - 1 - i;
            }
            freeCount = QUEUE_SIZE;
            slotOfId = new int[65536];
        }
    }

    /** The device thread's private state. */
    @State(Scope.Thread)
    public static class RingDeviceSide {
        final ChainReader reader = new ChainReader();
        MemorySegment scratch;

        @Setup(Level.Trial)
        public void open() {
            Affinity.pin("device", Affinity.DEVICE_CPU);
            scratch = Arena.ofAuto().allocate(Payload.BYTES, 64);
        }
    }

    @Benchmark
    @Group("ring")
    @GroupThreads(1)
    public void driver(Ring r, RingDriverSide d) {
        offer(r.pair, r.batch, d);
    }

    @Benchmark
    @Group("ring")
    @GroupThreads(1)
    public void device(Ring r, RingDeviceSide d, Transfers t, Blackhole bh) {
        t.transfers += serve(r.pair.device, r.batch, d, bh);
    }

    /**
     * One driver invocation: when fewer than {@code batch} buffers are free, collects used chains
     * (their buffers go back to the pool); then fills up to {@code batch} free buffers, submits each
     * as one readable descriptor and publishes once. Reclaiming only when short is the driver's
     * cached view of the device's progress (JCTools' producer reads the consumer's index only when
     * its cached limit runs out, the same way): the used ring's index line, which the device keeps
     * writing, is then read once per many elements instead of once per invocation (tuning record
     * "lazy reclaim": 1.35x split, 1.46x packed at batch 1). Shared with {@link InflightOverhead}.
     */
    static void offer(RingPair r, int batch, RingDriverSide d) {
        DriverQueue q = r.driver;
        int[] free = d.freeSlots;
        int[] slotOfId = d.slotOfId;
        int freeCount = d.freeCount;
        int id;
        if (freeCount < batch) {
            while ((id = q.pollUsed()) >= 0) {
                free[freeCount++] = slotOfId[id];
            }
        }
        int n = Math.min(batch, freeCount);
        if (n == 0) {
            d.freeCount = freeCount;
            return;
        }
        MemorySegment source = d.source;
        MemorySegment data = r.data;
        long dataGpa = r.dataGpa;
        long sequence = d.sequence;
        for (int i = 0; i < n; i++) {
            int slot = free[--freeCount];
            long offset = (long) slot * Payload.BYTES;
            Payload.stamp(source, sequence++);
            MemorySegment.copy(source, 0, data, offset, Payload.BYTES);
            q.addReadable(dataGpa + offset, Payload.BYTES);
            slotOfId[q.submit()] = slot;
        }
        d.sequence = sequence;
        d.freeCount = freeCount;
        q.publish();
    }

    /**
     * One device invocation: polls up to {@code batch} chains, copies each one's 64 bytes out, stages
     * a used entry per chain and publishes once (no notification check: the driver polls). Returns
     * the chains served. Shared with {@link InflightOverhead}.
     */
    static int serve(DeviceQueue q, int batch, RingDeviceSide d, Blackhole bh) {
        ChainReader reader = d.reader;
        MemorySegment scratch = d.scratch;
        int n = 0;
        DescriptorChain chain;
        while (n < batch && (chain = q.poll()) != null) {
            reader.reset(chain).read(scratch, 0, Payload.BYTES);
            bh.consume(Payload.sequence(scratch));
            q.addUsed(chain, 0);
            n++;
        }
        if (n > 0) {
            q.publish();
        }
        return n;
    }

    /** JCTools SpscArrayQueue carrying pooled 64-byte slots. Read-only once set up. */
    @State(Scope.Group)
    public static class Jctools {
        @Param({"1", "8", "32"})
        public int batch;

        SpscArrayQueue<byte[]> queue;
        byte[][] slots;
        int slotMask;

        @Setup(Level.Trial)
        public void open() {
            queue = new SpscArrayQueue<>(QUEUE_SIZE);
            slots = new byte[2 * queue.capacity()][];
            for (int i = 0; i < slots.length; i++) {
                slots[i] = new byte[Payload.BYTES];
            }
            slotMask = slots.length - 1;
        }
    }

    /** A producer's private state: its 64-byte source and sequence number (JCTools and Agrona). */
    @State(Scope.Thread)
    public static class ProducerSide {
        byte[] source;
        UnsafeBuffer sourceBuffer;
        long sequence;

        @Setup(Level.Trial)
        public void open() {
            Affinity.pin("producer", Affinity.DRIVER_CPU);
            source = new byte[Payload.BYTES];
            sourceBuffer = new UnsafeBuffer(source);
        }
    }

    /** A consumer's private state: its 64-byte scratch and the Agrona handler that fills it. */
    @State(Scope.Thread)
    public static class ConsumerSide {
        byte[] scratch;
        long lastSequence;
        MessageHandler handler;

        @Setup(Level.Trial)
        public void open() {
            Affinity.pin("consumer", Affinity.DEVICE_CPU);
            scratch = new byte[Payload.BYTES];
            handler = (type, buffer, index, length) -> {
                buffer.getBytes(index, scratch, 0, Payload.BYTES);
                lastSequence = (long) Payload.BYTES_LONG.get(scratch, 0);
            };
        }
    }

    @Benchmark
    @Group("jctools")
    @GroupThreads(1)
    public void jctoolsProducer(Jctools s, ProducerSide p) {
        SpscArrayQueue<byte[]> q = s.queue;
        byte[][] slots = s.slots;
        byte[] source = p.source;
        long sequence = p.sequence;
        for (int i = 0; i < s.batch; i++) {
            // Safe to fill before the offer: the slot's previous element is 2 capacities old, so the
            // consumer finished reading it before it freed room for any element offered since.
            byte[] slot = slots[(int) sequence & s.slotMask];
            Payload.BYTES_LONG.set(source, 0, sequence);
            System.arraycopy(source, 0, slot, 0, Payload.BYTES);
            if (!q.offer(slot)) {
                break;
            }
            sequence++;
        }
        p.sequence = sequence;
    }

    @Benchmark
    @Group("jctools")
    @GroupThreads(1)
    public void jctoolsConsumer(Jctools s, ConsumerSide c, Transfers t, Blackhole bh) {
        SpscArrayQueue<byte[]> q = s.queue;
        byte[] scratch = c.scratch;
        int n = 0;
        byte[] slot;
        while (n < s.batch && (slot = q.poll()) != null) {
            System.arraycopy(slot, 0, scratch, 0, Payload.BYTES);
            bh.consume((long) Payload.BYTES_LONG.get(scratch, 0));
            n++;
        }
        t.transfers += n;
    }

    /** Agrona OneToOneRingBuffer carrying 64-byte messages. Read-only once set up. */
    @State(Scope.Group)
    public static class Agrona {
        /** Ring capacity: 32 KiB, 455 records of 72 bytes (8-byte header + 64). */
        static final int CAPACITY = 32 * 1024;

        @Param({"1", "8", "32"})
        public int batch;

        OneToOneRingBuffer ring;

        @Setup(Level.Trial)
        public void open() {
            ring = new OneToOneRingBuffer(new UnsafeBuffer(
                    ByteBuffer.allocateDirect(CAPACITY + RingBufferDescriptor.TRAILER_LENGTH)));
        }
    }

    @Benchmark
    @Group("agrona")
    @GroupThreads(1)
    public void agronaProducer(Agrona s, ProducerSide p) {
        OneToOneRingBuffer ring = s.ring;
        UnsafeBuffer source = p.sourceBuffer;
        long sequence = p.sequence;
        for (int i = 0; i < s.batch; i++) {
            source.putLong(0, sequence, java.nio.ByteOrder.LITTLE_ENDIAN);
            if (!ring.write(1, source, 0, Payload.BYTES)) {
                break;
            }
            sequence++;
        }
        p.sequence = sequence;
    }

    @Benchmark
    @Group("agrona")
    @GroupThreads(1)
    public void agronaConsumer(Agrona s, ConsumerSide c, Transfers t, Blackhole bh) {
        int n = s.ring.read(c.handler, s.batch);
        if (n > 0) {
            bh.consume(c.lastSequence);
            t.transfers += n;
        }
    }
}
