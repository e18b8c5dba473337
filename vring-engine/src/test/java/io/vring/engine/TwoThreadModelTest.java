package io.vring.engine;

import io.vring.engine.chain.ChainReader;
import io.vring.engine.chain.ChainWriter;
import io.vring.engine.chain.DescriptorChain;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.stream.Stream;

import static io.vring.engine.VirtioFeatures.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * A driver thread and a device thread on one queue in shared memory, random chain shapes and batch
 * sizes: every chain arrives once, in submission order, with the bytes the driver wrote, and every
 * reply comes back with the length and bytes the device wrote (in submission order with IN_ORDER).
 */
class TwoThreadModelTest {
    private static final int CHAINS = 20_000;
    private static final int MAX_BUFFER = 256;
    /** How long either side may see no progress. A deadline for the whole run failed on loaded CI machines (ring size 1, two spinning threads). */
    private static final long STALL_NANOS = TimeUnit.SECONDS.toNanos(20);

    static Stream<Arguments> cases() {
        long[] featureSets = {
                bit(VERSION_1),
                bit(VERSION_1) | bit(EVENT_IDX) | bit(INDIRECT_DESC),
                bit(VERSION_1) | bit(IN_ORDER) | bit(INDIRECT_DESC),
                bit(VERSION_1) | bit(EVENT_IDX) | bit(IN_ORDER),
        };
        List<Arguments> all = new ArrayList<>();
        SplittableRandom seeds = new SplittableRandom(20261125);
        for (RingFixture.Kind kind : RingFixture.Kind.values()) {
            for (long f : featureSets) {
                for (int i = 0; i < 3; i++) {
                    all.add(Arguments.of(kind, f, seeds.nextLong()));
                }
            }
        }
        return all.stream();
    }

    @ParameterizedTest(name = "{0} features=0x{1} seed {2}")
    @MethodSource("cases")
    void everyChainArrivesOnceInOrderWithItsBytes(RingFixture.Kind kind, long features, long seed) throws Exception {
        System.out.println("TwoThreadModelTest " + kind + " features=0x" + Long.toHexString(features) + " seed " + seed);
        SplittableRandom random = new SplittableRandom(seed);
        int size = kind == RingFixture.Kind.SPLIT ? 1 << random.nextInt(1, 9) : random.nextInt(1, 300);
        try (RingFixture ring = new RingFixture(kind, size, features, (long) size * 8 * MAX_BUFFER);
             ExecutorService pool = Executors.newFixedThreadPool(2)) {
            Future<Long> device = pool.submit(() -> runDevice(ring, seed));
            Future<Long> driver = pool.submit(() -> runDriver(ring, seed, size, features));
            try {
                assertEquals(CHAINS, driver.get(180, TimeUnit.SECONDS), "chains completed");
                assertEquals(CHAINS, device.get(180, TimeUnit.SECONDS), "chains served");
            } catch (TimeoutException e) {
                fail("stalled: seed " + seed + " device " + ring.device + " driver " + ring.driver);
            } catch (ExecutionException e) {
                Throwable deviceFailure = device.isDone() && !device.isCancelled() ? failureOf(device) : null;
                Throwable cause = deviceFailure != null ? deviceFailure : e.getCause();
                throw new AssertionError("seed " + seed + ": " + cause, cause);
            }
        }
    }

    private static Throwable failureOf(Future<?> f) {
        try {
            f.get();
            return null;
        } catch (ExecutionException e) {
            return e.getCause();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return e;
        }
    }

    /** Payload byte {@code i} of the chain with sequence number {@code seq}. */
    private static byte payload(long seq, long i) {
        return (byte) (seq * 31 + i * 7 + (i >>> 8));
    }

    private static long runDevice(RingFixture ring, long seed) {
        DeviceQueue q = ring.device;
        ChainReader reader = new ChainReader();
        ChainWriter writer = new ChainWriter();
        SplittableRandom random = new SplittableRandom(seed ^ 0x5DEECE66DL);
        MemorySegment scratch = ring.arena.allocate(8L * MAX_BUFFER * RingFixture.MAX_INDIRECT);
        long expectSeq = 0;
        long deadline = System.nanoTime() + STALL_NANOS;
        int[] held = new int[q.size()];
        int[] heldLen = new int[q.size()];
        int nheld = 0;
        while (expectSeq < CHAINS) {
            DescriptorChain c = q.poll();
            if (c == null) {
                assertFalse(q.isBroken(), q::brokenReason);
                nheld = complete(q, held, heldLen, nheld, random); // and publish what is staged
                if (System.nanoTime() > deadline) {
                    throw new AssertionError("device waited too long at seq " + expectSeq + ": " + q);
                }
                Thread.onSpinWait();
                continue;
            }
            deadline = System.nanoTime() + STALL_NANOS; // a stall, not a slow machine, fails the test
            long readable = c.readableBytes();
            reader.reset(c);
            long got = reader.read(scratch, 0, readable);
            assertEquals(readable, got);
            long seq = scratch.get(ValueLayout.JAVA_LONG_UNALIGNED, 0);
            assertEquals(expectSeq, seq, "chains arrive once and in submission order");
            for (long i = 8; i < readable; i++) {
                if (scratch.get(ValueLayout.JAVA_BYTE, i) != payload(seq, i)) {
                    throw new AssertionError("seq " + seq + " byte " + i + " differs");
                }
            }
            // Reply: seq then a pattern, into a random prefix of the writable space.
            long writable = c.writableBytes();
            long reply = writable == 0 ? 0 : random.nextLong(Math.min(writable, 8), writable + 1);
            for (long i = 0; i < reply; i++) {
                scratch.set(ValueLayout.JAVA_BYTE, i, (byte) ~payload(seq, i));
            }
            if (reply >= 8) {
                scratch.set(ValueLayout.JAVA_LONG_UNALIGNED, 0, seq);
            }
            writer.reset(c).write(scratch, 0, reply);
            boolean inOrder = VirtioFeatures.has(q.features(), IN_ORDER);
            if (!inOrder && random.nextInt(4) == 0) {
                held[nheld] = c.token();
                heldLen[nheld++] = (int) reply;
            } else {
                q.addUsed(c, (int) reply);
                if (random.nextInt(3) == 0) {
                    publish(q);
                }
            }
            expectSeq++;
        }
        if (nheld > 0) {
            complete(q, held, heldLen, nheld, random);
        }
        publish(q);
        return expectSeq;
    }

    /** Completes held chains in reverse: out of order. */
    private static int complete(DeviceQueue q, int[] held, int[] heldLen, int n, SplittableRandom random) {
        for (int i = n - 1; i >= 0; i--) {
            q.addUsed(held[i], heldLen[i]);
        }
        publish(q);
        return 0;
    }

    private static void publish(DeviceQueue q) {
        q.publish();
        q.needsNotification();
    }

    private static long runDriver(RingFixture ring, long seed, int size, long features) {
        DriverQueue q = ring.driver;
        SplittableRandom random = new SplittableRandom(seed);
        MemorySegment mem = ring.segment;
        boolean indirect = VirtioFeatures.has(features, INDIRECT_DESC);
        boolean inOrder = VirtioFeatures.has(features, IN_ORDER);
        long[] seqOfId = new long[65536];
        long[] replyGpaOfId = new long[65536];
        long[] writableOfId = new long[65536];
        java.util.ArrayDeque<Integer> order = new java.util.ArrayDeque<>();
        // Buffer slots: one per chain in flight, returned when the chain comes back used.
        java.util.ArrayDeque<Integer> freeSlots = new java.util.ArrayDeque<>();
        for (int i = 0; i < size; i++) {
            freeSlots.add(i);
        }
        int[] slotOfId = new int[65536];
        long nextSeq = 0;
        long done = 0;
        long slotBytes = 8L * MAX_BUFFER;
        long deadline = System.nanoTime() + STALL_NANOS;
        while (done < CHAINS) {
            int batch = random.nextInt(1, 33);
            boolean added = false;
            for (int b = 0; b < batch && nextSeq < CHAINS; b++) {
                if (freeSlots.isEmpty()) {
                    break;
                }
                int slot = freeSlots.peekFirst();
                long base = ring.dataGpa + slot * slotBytes;
                int readable = random.nextInt(1, 5);
                int writable = random.nextInt(0, 4);
                boolean useIndirect = indirect && random.nextInt(3) == 0;
                int maxBuffers = Math.min(size, useIndirect ? RingFixture.MAX_INDIRECT : 8); // a chain never exceeds the queue size
                if (readable + writable > maxBuffers) {
                    readable = 1;
                    writable = Math.min(writable, maxBuffers - 1);
                }
                long at = base;
                long totalReadable = 0;
                for (int r = 0; r < readable; r++) {
                    int len = r == 0 ? random.nextInt(8, MAX_BUFFER / 2) : random.nextInt(0, MAX_BUFFER / 2);
                    for (int i = 0; i < len; i++) {
                        mem.set(ValueLayout.JAVA_BYTE, ring.offsetOf(at) + i, payload(nextSeq, totalReadable + i));
                    }
                    if (r == 0) {
                        mem.set(ValueLayout.JAVA_LONG_UNALIGNED, ring.offsetOf(at), nextSeq);
                    }
                    q.addReadable(at, len);
                    at += len;
                    totalReadable += len;
                }
                long replyAt = at;
                long totalWritable = 0;
                for (int w = 0; w < writable; w++) {
                    int len = random.nextInt(8, MAX_BUFFER / 2);
                    q.addWritable(at, len);
                    at += len;
                    totalWritable += len;
                }
                int id = useIndirect ? q.submitIndirect() : q.submit();
                if (id < 0) {
                    break; // ring full: collect first
                }
                assertEquals(-1, order.contains(id) ? 0 : -1, "id " + id + " handed out twice");
                freeSlots.removeFirst();
                slotOfId[id] = slot;
                seqOfId[id] = nextSeq;
                replyGpaOfId[id] = replyAt;
                writableOfId[id] = totalWritable;
                order.add(id);
                nextSeq++;
                added = true;
            }
            if (added) {
                q.publish();
                q.needsKick();
            }
            int id;
            boolean any = false;
            while ((id = q.pollUsed()) >= 0) {
                any = true;
                assertTrue(order.contains(id), "used id " + id + " is outstanding");
                if (inOrder) {
                    assertEquals(order.peekFirst(), id, "IN_ORDER: used in submission order");
                }
                order.remove(id);
                freeSlots.add(slotOfId[id]);
                long seq = seqOfId[id];
                int len = q.usedLength();
                assertTrue(len <= writableOfId[id]);
                if (len >= 8) {
                    assertEquals(seq, mem.get(ValueLayout.JAVA_LONG_UNALIGNED, ring.offsetOf(replyGpaOfId[id])), "reply of seq " + seq);
                }
                // The replies of skipped IN_ORDER chains count as fully used; check the pattern only where written.
                done++;
            }
            if (!any && !added) {
                if (System.nanoTime() > deadline) {
                    throw new AssertionError("driver waited too long at " + done + ": " + q);
                }
                Thread.onSpinWait();
            } else {
                deadline = System.nanoTime() + STALL_NANOS;
            }
        }
        return done;
    }
}
