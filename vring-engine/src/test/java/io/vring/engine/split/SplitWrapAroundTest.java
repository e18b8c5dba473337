package io.vring.engine.split;

import io.vring.engine.chain.ChainReader;
import io.vring.engine.chain.ChainWriter;
import io.vring.engine.chain.DescriptorChain;
import io.vring.engine.memory.GuardedRegion;
import io.vring.engine.memory.GuestMemory;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import static io.vring.engine.VirtioFeatures.EVENT_IDX;
import static io.vring.engine.VirtioFeatures.IN_ORDER;
import static io.vring.engine.VirtioFeatures.bit;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Every queue size from 1 to 32768 carries more than 65536 + 2·size chains driver → device →
 * driver, a ring-full at a time, so both free-running 16-bit indices wrap and every ring slot is
 * reused; ids, used lengths, payloads and the notification decisions are checked on every chain.
 */
class SplitWrapAroundTest {
    private static final ValueLayout.OfLong LE_LONG = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN);
    private static final long GPA = 0x1000000;
    private static final long DESC = GPA;
    private static final long AVAIL = GPA + 0x80000;
    private static final long USED = GPA + 0x100000;
    private static final long BUF = GPA + 0x200000;
    private static final int SLOT = 32; // per chain: 8 readable bytes, then 16 writable at +16

    /** How the device completes a ring-full of chains. */
    enum Completion {
        /** In the order it popped them, one used element each. */
        FORWARD,
        /** Last popped first: out-of-order completion. */
        REVERSE,
        /** IN_ORDER negotiated: in order, the device batching runs of fully used chains into one element. */
        IN_ORDER_BATCHED
    }

    static Stream<Arguments> sizes() {
        List<Arguments> all = new ArrayList<>();
        for (int size = 1; size <= 32768; size <<= 1) {
            for (Completion completion : Completion.values()) {
                all.add(Arguments.of(size, false, completion));
                all.add(Arguments.of(size, true, completion));
            }
        }
        return all.stream();
    }

    private static long valueOf(long seq) {
        return seq * 0x9E3779B97F4A7C15L;
    }

    private static int usedLengthOf(long seq, Completion completion) {
        if (completion == Completion.IN_ORDER_BATCHED) {
            return seq % 5 == 4 ? 3 : 8; // mostly full: runs of five chains per used element
        }
        return (int) (seq % 9);
    }

    @ParameterizedTest(name = "size {0}, EVENT_IDX {1}, {2}")
    @MethodSource("sizes")
    void indicesWrapAndEveryChainComesBackWithItsIdAndLength(int size, boolean eventIdx, Completion completion) {
        long features = (eventIdx ? bit(EVENT_IDX) : 0) | (completion == Completion.IN_ORDER_BATCHED ? bit(IN_ORDER) : 0);
        try (Arena arena = Arena.ofShared()) {
            GuardedRegion guarded = new GuardedRegion(arena, GPA, 4 << 20);
            MemorySegment seg = guarded.segment();
            GuestMemory memory = GuestMemory.of(guarded.region());
            SpecRing ring = new SpecRing(guarded.region(), size, DESC, AVAIL, USED);
            SplitDriverQueue driver = new SplitDriverQueue("driver", memory, size, ring.addresses(), features, null);
            SplitDeviceQueue device = new SplitDeviceQueue("device", memory, size, ring.addresses(), features);
            ChainReader reader = new ChainReader();
            ChainWriter writer = new ChainWriter();
            byte[] eight = new byte[8];

            boolean withReadable = size >= 2;
            int batch = withReadable ? size / 2 : size;
            long minimum = 65536L + 2L * size + 1;
            long total = (minimum + batch - 1) / batch * batch;
            long[] seqOfHead = new long[size];
            int[] submitted = new int[batch];
            int[] tokens = new int[batch];
            long seq = 0;
            int usedWraps = 0;
            int availWraps = 0;
            int lastUsedIdx = 0;
            int lastAvailIdx = 0;

            for (long round = 0; seq < total; round++) {
                boolean wantNotifications = round % 2 == 0;
                if (wantNotifications) {
                    assertFalse(device.enableNotification(), "ring drained");
                    assertFalse(driver.enableUsedNotification(), "nothing used");
                } else {
                    device.disableNotification();
                    driver.disableUsedNotification();
                }

                for (int i = 0; i < batch; i++) {
                    long s = seq + i;
                    // At most one ring-full is outstanding, so seq mod batch names a free buffer slot.
                    long slot = BUF + (s % batch) * SLOT;
                    if (withReadable) {
                        seg.set(LE_LONG, slot - GPA, valueOf(s));
                        driver.addReadable(slot, 8);
                    }
                    driver.addWritable(slot + 16, 16);
                    int head = driver.submit();
                    assertTrue(head >= 0 && head < size, "head " + head);
                    seqOfHead[head] = s;
                    submitted[i] = head;
                }
                driver.publish();
                assertEquals(wantNotifications, driver.needsKick(), "kick for round " + round);

                for (int i = 0; i < batch; i++) {
                    DescriptorChain chain = device.poll();
                    assertNotNull(chain, device.toString());
                    int head = chain.head();
                    assertEquals(submitted[i], head, "avail order");
                    long s = seqOfHead[head];
                    assertEquals(withReadable ? 8 : 0, chain.readableBytes());
                    assertEquals(16, chain.writableBytes());
                    if (withReadable) {
                        reader.reset(chain).read(eight, 0, 8);
                        assertEquals(valueOf(s), MemorySegment.ofArray(eight).get(LE_LONG, 0), "payload of seq " + s);
                    }
                    int len = usedLengthOf(s, completion);
                    MemorySegment.ofArray(eight).set(LE_LONG, 0, ~valueOf(s));
                    assertEquals(len, writer.reset(chain).write(eight, 0, len));
                    tokens[i] = chain.token();
                }
                assertNull(device.poll());
                for (int k = 0; k < batch; k++) {
                    int i = completion == Completion.REVERSE ? batch - 1 - k : k;
                    device.addUsed(tokens[i], usedLengthOf(seqOfHead[tokens[i]], completion));
                }
                device.publish();
                assertEquals(wantNotifications, device.needsNotification(), "call for round " + round);

                for (int k = 0; k < batch; k++) {
                    int i = completion == Completion.REVERSE ? batch - 1 - k : k;
                    int id = driver.pollUsed();
                    assertEquals(submitted[i], id, "used order in round " + round);
                    long s = seqOfHead[id];
                    int len = usedLengthOf(s, completion);
                    assertEquals(len, driver.usedLength(), "used length of seq " + s);
                    long written = seg.get(LE_LONG, BUF + (s % batch) * SLOT + 16 - GPA);
                    long mask = len == 8 ? -1L : (1L << (8 * len)) - 1;
                    assertEquals(~valueOf(s) & mask, written & mask, "bytes written for seq " + s);
                }
                assertEquals(-1, driver.pollUsed());
                assertEquals(0, driver.outstanding());
                assertEquals(size, driver.freeDescriptors());
                seq += batch;

                int usedIdx = ring.usedIdx();
                int availIdx = ring.availIdx();
                assertEquals(seq & 0xFFFF, usedIdx, "used idx in the ring");
                assertEquals(seq & 0xFFFF, availIdx, "avail idx in the ring");
                usedWraps += usedIdx < lastUsedIdx ? 1 : 0;
                availWraps += availIdx < lastAvailIdx ? 1 : 0;
                lastUsedIdx = usedIdx;
                lastAvailIdx = availIdx;
                // Clear this round's buffers so a stale byte cannot pass for a fresh one.
                seg.asSlice(BUF - GPA, (long) size * SLOT).fill((byte) 0);
            }
            assertTrue(seq > 65536 + 2L * size);
            assertTrue(usedWraps >= 1 && availWraps >= 1, "both indices wrapped");
            assertFalse(device.isBroken(), device.toString());
            assertFalse(driver.isBroken(), driver.toString());
            guarded.assertCanariesIntact();
        }
    }
}
