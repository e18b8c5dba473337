package io.vring.engine.split;

import io.vring.engine.IndirectArea;
import io.vring.engine.RingAddresses;
import io.vring.engine.chain.ChainReader;
import io.vring.engine.chain.ChainWriter;
import io.vring.engine.chain.DescriptorChain;
import io.vring.engine.memory.GuardedRegion;
import io.vring.engine.memory.GuestMemory;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.stream.LongStream;

import static io.vring.engine.VirtioFeatures.EVENT_IDX;
import static io.vring.engine.VirtioFeatures.INDIRECT_DESC;
import static io.vring.engine.VirtioFeatures.IN_ORDER;
import static io.vring.engine.VirtioFeatures.bit;
import static org.junit.jupiter.api.Assertions.*;

/**
 * A randomized driver and device (single-threaded) checked against a model: random chain shapes
 * (1..8 buffers, readable/writable mixes, some indirect, some crossing from one guest region into
 * the GPA-adjacent next), random batch sizes, random out-of-order completion (in order when
 * IN_ORDER is negotiated), random feature sets. Every chain reaches the device exactly once, in
 * avail order, with its bytes; every used length and written byte comes back to the driver.
 */
class SplitModelTest {
    private static final long A = 0x100000;
    private static final long B = 0x200000;
    private static final long REGION = 0x100000;
    private static final long INDIRECT_AREA = 0x180000;
    /** Buffer pool: one 512-byte slot per outstanding chain, deliberately straddling A and B. */
    private static final long POOL = B - 0x10000 - 0x20;
    private static final int SLOT = 512;
    private static final int CELL = 64;
    private static final int STEPS = 4000;

    static LongStream seeds() {
        return new SplittableRandom(42).longs(30);
    }

    /** What the driver offered as one chain, and what the device wrote back. */
    private static final class Expected {
        final int slot;
        final byte[] readable;
        final long[] writableGpa;
        final int[] writableLen;
        final int writableTotal;
        byte[] reply;

        Expected(int slot, byte[] readable, long[] writableGpa, int[] writableLen) {
            this.slot = slot;
            this.readable = readable;
            this.writableGpa = writableGpa;
            this.writableLen = writableLen;
            int total = 0;
            for (int len : writableLen) {
                total += len;
            }
            this.writableTotal = total;
        }
    }

    @ParameterizedTest(name = "seed {0}")
    @MethodSource("seeds")
    void everyChainArrivesOnceWithItsBytesAndItsUsedLengthComesBack(long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        int size = 1 << rnd.nextInt(0, 9);
        boolean eventIdx = rnd.nextBoolean();
        boolean inOrder = rnd.nextBoolean();
        boolean indirect = rnd.nextInt(3) != 0;
        long features = (eventIdx ? bit(EVENT_IDX) : 0) | (inOrder ? bit(IN_ORDER) : 0) | (indirect ? bit(INDIRECT_DESC) : 0);
        String config = "seed " + seed + ": size " + size + ", EVENT_IDX " + eventIdx + ", IN_ORDER " + inOrder + ", INDIRECT " + indirect;

        try (Arena arena = Arena.ofShared()) {
            GuardedRegion regionA = new GuardedRegion(arena, A, REGION);
            GuardedRegion regionB = new GuardedRegion(arena, B, REGION);
            GuestMemory memory = GuestMemory.of(regionA.region(), regionB.region());
            RingAddresses rings = new RingAddresses(A, A + 0x2000, A + 0x4000);
            SplitDriverQueue driver = new SplitDriverQueue("model driver", memory, size, rings, features,
                    indirect ? new IndirectArea(INDIRECT_AREA, 8) : null);
            SplitDeviceQueue device = new SplitDeviceQueue("model device", memory, size, rings, features);
            ChainReader reader = new ChainReader();
            ChainWriter writer = new ChainWriter();

            ArrayDeque<Integer> freeSlots = new ArrayDeque<>();
            for (int i = 0; i < size; i++) {
                freeSlots.add(i);
            }
            Map<Integer, Expected> outstanding = new HashMap<>();
            ArrayDeque<Integer> availOrder = new ArrayDeque<>();   // published, not yet polled
            List<Integer> inFlight = new ArrayList<>();            // polled, not completed (poll order)
            Set<Integer> onDevice = new HashSet<>();
            ArrayDeque<Integer> staged = new ArrayDeque<>();       // completed, not yet published
            ArrayDeque<Integer> usedOrder = new ArrayDeque<>();    // published, not yet collected
            long offered = 0;
            long delivered = 0;

            for (int step = 0; step < STEPS; step++) {
                String where = config + ", step " + step;
                switch (rnd.nextInt(4)) {
                    case 0 -> { // driver offers a batch
                        int batch = rnd.nextInt(1, size + 1);
                        for (int c = 0; c < batch && driver.freeDescriptors() > 0; c++) {
                            boolean viaTable = indirect && rnd.nextInt(3) == 0;
                            int max = viaTable ? Math.min(8, size) : Math.min(8, driver.freeDescriptors());
                            int buffers = rnd.nextInt(1, max + 1);
                            int readables = rnd.nextInt(0, buffers + 1);
                            int slot = freeSlots.remove();
                            long slotGpa = POOL + (long) slot * SLOT;
                            byte[] readable = new byte[0];
                            long[] wGpa = new long[buffers - readables];
                            int[] wLen = new int[buffers - readables];
                            for (int j = 0; j < buffers; j++) {
                                int len = rnd.nextInt(16) == 0 ? 0 : rnd.nextInt(1, CELL + 1);
                                long gpa = slotGpa + (long) CELL * j;
                                if (j < readables) {
                                    byte[] payload = new byte[len];
                                    rnd.nextBytes(payload);
                                    writeGuest(memory, gpa, payload);
                                    byte[] grown = java.util.Arrays.copyOf(readable, readable.length + len);
                                    System.arraycopy(payload, 0, grown, readable.length, len);
                                    readable = grown;
                                    driver.addReadable(gpa, len);
                                } else {
                                    writeGuest(memory, gpa, filled(len, (byte) 0xEE));
                                    wGpa[j - readables] = gpa;
                                    wLen[j - readables] = len;
                                    driver.addWritable(gpa, len);
                                }
                            }
                            int id = viaTable ? driver.submitIndirect() : driver.submit();
                            assertTrue(id >= 0, where + ": submit refused with " + driver.freeDescriptors() + " free");
                            assertNull(outstanding.put(id, new Expected(slot, readable, wGpa, wLen)), where + ": id " + id + " reused while outstanding");
                            availOrder.add(id);
                            offered++;
                        }
                        driver.publish();
                        driver.needsKick();
                        if (rnd.nextInt(4) == 0) {
                            assertEquals(!availOrder.isEmpty(), device.enableNotification(), where + ": device sees what is available");
                        } else if (rnd.nextInt(4) == 0) {
                            device.disableNotification();
                        }
                    }
                    case 1 -> { // device polls some chains
                        int polls = rnd.nextInt(0, size + 1);
                        for (int p = 0; p < polls; p++) {
                            DescriptorChain chain = device.poll();
                            if (availOrder.isEmpty()) {
                                assertNull(chain, where);
                                break;
                            }
                            assertNotNull(chain, where + ": " + device);
                            int head = chain.head();
                            assertEquals(availOrder.remove(), head, where + ": avail order");
                            assertTrue(onDevice.add(head), where + ": chain " + head + " delivered twice");
                            Expected e = outstanding.get(head);
                            assertEquals(e.readable.length, chain.readableBytes(), where);
                            assertEquals(e.writableTotal, chain.writableBytes(), where);
                            byte[] got = new byte[e.readable.length];
                            assertEquals(got.length, reader.reset(chain).read(got, 0, got.length));
                            assertArrayEquals(e.readable, got, where + ": readable bytes of " + head);
                            int len = inOrder && rnd.nextInt(4) != 0 ? e.writableTotal : rnd.nextInt(0, e.writableTotal + 1);
                            e.reply = new byte[len];
                            rnd.nextBytes(e.reply);
                            assertEquals(len, writer.reset(chain).write(e.reply, 0, len));
                            inFlight.add(chain.token());
                        }
                    }
                    case 2 -> { // device completes some, in order or not, and maybe publishes
                        int completions = rnd.nextInt(0, inFlight.size() + 1);
                        for (int k = 0; k < completions; k++) {
                            int token = inFlight.remove(inOrder ? 0 : rnd.nextInt(inFlight.size()));
                            device.addUsed(token, outstanding.get(token).reply.length);
                            onDevice.remove(token);
                            staged.add(token);
                        }
                        if (rnd.nextInt(3) != 0) {
                            device.publish();
                            boolean anything = !staged.isEmpty();
                            usedOrder.addAll(staged);
                            staged.clear();
                            boolean call = device.needsNotification();
                            if (!anything) {
                                assertFalse(call, where + ": a call with nothing published");
                            }
                        }
                    }
                    default -> { // driver collects some
                        int collects = rnd.nextInt(0, size + 2);
                        for (int k = 0; k < collects; k++) {
                            int id = driver.pollUsed();
                            if (usedOrder.isEmpty()) {
                                assertEquals(-1, id, where);
                                break;
                            }
                            assertEquals(usedOrder.remove(), id, where + ": used order");
                            Expected e = outstanding.remove(id);
                            assertEquals(e.reply.length, driver.usedLength(), where + ": used length of " + id);
                            assertArrayEquals(e.reply, gatherWritten(memory, e), where + ": bytes written to " + id);
                            freeSlots.add(e.slot);
                            delivered++;
                        }
                        if (rnd.nextInt(4) == 0) {
                            assertEquals(!usedOrder.isEmpty(), driver.enableUsedNotification(), where + ": driver sees what is used");
                        } else if (rnd.nextInt(4) == 0) {
                            driver.disableUsedNotification();
                        }
                    }
                }
            }

            // Drain: everything offered comes back.
            DescriptorChain chain;
            while ((chain = device.poll()) != null) {
                int head = chain.head();
                assertEquals(availOrder.remove(), head);
                Expected e = outstanding.get(head);
                e.reply = new byte[0];
                inFlight.add(chain.token());
            }
            assertTrue(availOrder.isEmpty(), config);
            for (int token : inFlight) {
                device.addUsed(token, outstanding.get(token).reply.length);
                staged.add(token);
            }
            device.publish();
            usedOrder.addAll(staged);
            int id;
            while ((id = driver.pollUsed()) != -1) {
                assertEquals(usedOrder.remove(), id, config);
                Expected e = outstanding.remove(id);
                assertEquals(e.reply.length, driver.usedLength(), config);
                assertArrayEquals(e.reply, gatherWritten(memory, e), config);
                delivered++;
            }
            assertTrue(usedOrder.isEmpty(), config);
            assertTrue(outstanding.isEmpty(), config);
            assertEquals(offered, delivered, config);
            assertEquals(size, driver.freeDescriptors(), config);
            assertFalse(device.isBroken(), config + ": " + device.brokenReason());
            assertFalse(driver.isBroken(), config + ": " + driver.brokenReason());
            assertTrue(offered > 0, config);
            regionA.assertCanariesIntact();
            regionB.assertCanariesIntact();
        }
    }

    private static byte[] filled(int len, byte value) {
        byte[] b = new byte[len];
        java.util.Arrays.fill(b, value);
        return b;
    }

    private static void writeGuest(GuestMemory memory, long gpa, byte[] bytes) {
        for (int i = 0; i < bytes.length; i++) {
            int r = memory.regionOf(gpa + i);
            memory.segment(r).set(ValueLayout.JAVA_BYTE, gpa + i - memory.guestPhysicalStart(r), bytes[i]);
        }
    }

    private static byte[] readGuest(GuestMemory memory, long gpa, int len) {
        byte[] out = new byte[len];
        for (int i = 0; i < len; i++) {
            int r = memory.regionOf(gpa + i);
            MemorySegment s = memory.segment(r);
            out[i] = s.get(ValueLayout.JAVA_BYTE, gpa + i - memory.guestPhysicalStart(r));
        }
        return out;
    }

    /** The first {@code reply.length} bytes of the chain's writable buffers, in order. */
    private static byte[] gatherWritten(GuestMemory memory, Expected e) {
        byte[] out = new byte[e.reply.length];
        int at = 0;
        for (int i = 0; i < e.writableGpa.length && at < out.length; i++) {
            int run = Math.min(e.writableLen[i], out.length - at);
            System.arraycopy(readGuest(memory, e.writableGpa[i], run), 0, out, at, run);
            at += run;
        }
        return out;
    }
}
