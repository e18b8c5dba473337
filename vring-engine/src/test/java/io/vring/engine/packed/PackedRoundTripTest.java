package io.vring.engine.packed;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vring.engine.VirtioFeatures;
import io.vring.engine.chain.ChainReader;
import io.vring.engine.chain.ChainWriter;
import io.vring.engine.chain.DescriptorChain;

import java.util.SplittableRandom;
import java.util.stream.Stream;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** The engine's device and driver talking to each other, single-threaded, over many laps of the ring. */
class PackedRoundTripTest {
    private static final long IN_ORDER = PackedRig.ALL_FEATURES | VirtioFeatures.bit(VirtioFeatures.IN_ORDER);

    static Stream<Arguments> sizesAndOrders() {
        return Stream.of(1, 2, 3, 256, 32768)
                .flatMap(size -> Stream.of(Arguments.of(size, false), Arguments.of(size, true)));
    }

    @ParameterizedTest(name = "size {0}, in order {1}")
    @MethodSource("sizesAndOrders")
    void everyChainComesBackOnceWithItsDataAcrossManyWraps(int size, boolean inOrder) {
        long seed = 0x5EED_0000L + size * 2L + (inOrder ? 1 : 0);
        SplittableRandom random = new SplittableRandom(seed);
        try (PackedRig rig = new PackedRig(size, 1)) {
            long features = inOrder ? IN_ORDER : PackedRig.ALL_FEATURES;
            PackedDriverQueue driver = rig.driver(0, features);
            PackedDeviceQueue device = rig.device(0, features);
            GuardedMemory m = rig.guarded;
            ChainReader reader = new ChainReader();
            ChainWriter writer = new ChainWriter();
            byte[] eight = new byte[8];

            int[] freeBufs = new int[size];
            int freeBufCount = size;
            for (int i = 0; i < size; i++) {
                freeBufs[i] = i;
            }
            int[] bufOfId = new int[size];
            long[] seqOfId = new long[size];
            int[] lenOfId = new int[size];
            boolean[] outstanding = new boolean[size];
            int[] inFlightTokens = new int[size];
            int inFlight = 0;
            long nextInOrderSeq = 0;

            long target = Math.max(70_000, 4L * size);
            long submitted = 0;
            long completed = 0;
            long slotsUsed = 0;
            while (completed < target) {
                // Driver: offer a burst of chains.
                int burst = 1 + random.nextInt(Math.min(size, 16));
                for (int k = 0; k < burst && submitted < target && freeBufCount > 0; k++) {
                    int buf = freeBufs[--freeBufCount];
                    long seq = submitted;
                    m.putLong(rig.readable(0, buf), seq);
                    int shape = random.nextInt(4);
                    boolean indirect = random.nextInt(4) == 0;
                    int maxBuffers = Math.min(size, indirect ? PackedRig.INDIRECT_ENTRIES : driver.freeDescriptors());
                    if (maxBuffers >= 3 && shape == 2) {
                        driver.addReadable(rig.readable(0, buf), 8);
                        driver.addReadable(rig.readable(0, buf) + 8, 8);
                        driver.addWritable(rig.writable(0, buf), PackedRig.WRITABLE);
                    } else if (maxBuffers >= 3 && shape == 1) {
                        driver.addReadable(rig.readable(0, buf), PackedRig.READABLE);
                        driver.addWritable(rig.writable(0, buf), 24);
                        driver.addWritable(rig.writable(0, buf) + 24, 24);
                    } else if (shape == 3 && maxBuffers >= 2) {
                        driver.addReadable(rig.readable(0, buf), PackedRig.READABLE);
                        driver.addWritable(rig.writable(0, buf), PackedRig.WRITABLE);
                    } else {
                        driver.addReadable(rig.readable(0, buf), PackedRig.READABLE + PackedRig.WRITABLE);
                    }
                    int id = indirect ? driver.submitIndirect() : driver.submit();
                    if (id < 0) {
                        freeBufs[freeBufCount++] = buf;
                        break;
                    }
                    assertFalse(outstanding[id], "id handed out twice");
                    outstanding[id] = true;
                    bufOfId[id] = buf;
                    seqOfId[id] = seq;
                    submitted++;
                }
                driver.publish();
                driver.needsKick();

                // Device: take everything available; answer each with seq * 31 in its writable part.
                DescriptorChain chain;
                while ((chain = device.poll()) != null) {
                    reader.reset(chain);
                    assertEquals(8, reader.read(eight, 0, 8));
                    long seq = java.nio.ByteBuffer.wrap(eight).order(java.nio.ByteOrder.LITTLE_ENDIAN).getLong();
                    assertEquals(seqOfId[chain.head()], seq);
                    if (inOrder) {
                        assertEquals(nextInOrderSeq++, seq, "chains arrive in the order they were offered");
                    }
                    int len = 0;
                    if (chain.writableBytes() > 0) {
                        writer.reset(chain);
                        byte[] answer = java.nio.ByteBuffer.allocate(8).order(java.nio.ByteOrder.LITTLE_ENDIAN)
                                .putLong(seq * 31).array();
                        writer.write(answer, 0, 8);
                        len = random.nextInt(3) == 0 ? 8 + random.nextInt(PackedRig.WRITABLE - 8) : PackedRig.WRITABLE;
                    }
                    lenOfId[chain.head()] = len;
                    slotsUsed += chain.descriptorCount();
                    if (inOrder) {
                        device.addUsed(chain, len);
                    } else {
                        inFlightTokens[inFlight++] = chain.token();
                    }
                }
                assertFalse(device.isBroken(), () -> device.brokenReason());
                // Out of order: complete a random subset in a random order.
                int complete = inFlight == 0 ? 0 : 1 + random.nextInt(inFlight);
                for (int k = 0; k < complete; k++) {
                    int pick = random.nextInt(inFlight);
                    int token = inFlightTokens[pick];
                    inFlightTokens[pick] = inFlightTokens[--inFlight];
                    device.addUsed(token, lenOfId[token & 0xFFFF]);
                }
                device.publish();
                device.needsNotification();

                // Driver: collect, check the length and the answer.
                int id;
                while ((id = driver.pollUsed()) >= 0) {
                    assertTrue(outstanding[id], "used id " + id + " was not outstanding");
                    outstanding[id] = false;
                    int buf = bufOfId[id];
                    assertEquals(lenOfId[id], driver.usedLength(), "used length of id " + id);
                    if (lenOfId[id] > 0) {
                        assertEquals(seqOfId[id] * 31, m.getLong(rig.writable(0, buf)));
                    }
                    freeBufs[freeBufCount++] = buf;
                    completed++;
                }
            }
            assertEquals(submitted, completed);
            assertEquals(0, driver.outstanding());
            assertEquals(size, driver.freeDescriptors());
            assertNull(device.poll());
            assertTrue(slotsUsed > 65536, "the 16-bit arithmetic wrapped");
            assertTrue(m.canariesIntact());
        }
    }

    @Test
    void inOrderFoldsFullyUsedChainsIntoOneUsedDescriptorCarryingTheLastId() {
        try (PackedRig rig = new PackedRig(8, 1)) {
            PackedDriverQueue driver = rig.driver(0, IN_ORDER);
            PackedDeviceQueue device = rig.device(0, IN_ORDER);
            int[] ids = new int[4];
            for (int i = 0; i < 4; i++) {
                driver.addReadable(rig.readable(0, i), 16);
                driver.addWritable(rig.writable(0, i), 48);
                ids[i] = driver.submit();
            }
            driver.publish();
            int[] lens = {48, 48, 48, 5};
            for (int i = 0; i < 4; i++) {
                DescriptorChain c = device.poll();
                assertNotNull(c);
                device.addUsed(c, lens[i]);
            }
            device.publish();
            GuardedMemory m = rig.guarded;
            assertEquals(ids[3], m.getU16(rig.slot(0, 0) + 12), "one used descriptor with the last id");
            assertEquals(5, m.getInt(rig.slot(0, 0) + 8));
            assertEquals(0x8082, m.getU16(rig.slot(0, 0) + 14));
            for (int slot = 1; slot < 8; slot++) {
                assertFalse(PackedLayout.isUsed(m.getU16(rig.slot(0, slot) + 14), 1), "slot " + slot + " untouched");
            }
            assertEquals(0, device.usedPosition(), "four lists of two slots: the used position went once round, slot 0 wrap 0");
            for (int i = 0; i < 4; i++) {
                assertEquals(ids[i], driver.pollUsed());
                assertEquals(lens[i], driver.usedLength());
            }
            assertEquals(-1, driver.pollUsed());
            assertEquals(8, driver.freeDescriptors());
        }
    }

    @Test
    void inOrderStopsFoldingAtAChainThatWasNotFullyUsed() {
        try (PackedRig rig = new PackedRig(8, 1)) {
            PackedDriverQueue driver = rig.driver(0, IN_ORDER);
            PackedDeviceQueue device = rig.device(0, IN_ORDER);
            for (int i = 0; i < 3; i++) {
                driver.addWritable(rig.writable(0, i), 48);
                driver.submit();
            }
            int[] lens = {48, 7, 48};
            for (int i = 0; i < 3; i++) {
                device.addUsed(device.poll(), lens[i]);
            }
            device.publish();
            GuardedMemory m = rig.guarded;
            assertEquals(1, m.getU16(rig.slot(0, 0) + 12), "chains 0 and 1 fold; 1 was short so the run ends");
            assertEquals(7, m.getInt(rig.slot(0, 0) + 8));
            assertEquals(2, m.getU16(rig.slot(0, 2) + 12), "chain 2 gets its own used descriptor at its first slot");
            assertEquals(48, m.getInt(rig.slot(0, 2) + 8));
            for (int i = 0; i < 3; i++) {
                assertEquals(i, driver.pollUsed());
                assertEquals(lens[i], driver.usedLength());
            }
        }
    }
}
