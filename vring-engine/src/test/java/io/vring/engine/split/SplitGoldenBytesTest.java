package io.vring.engine.split;

import io.vring.engine.IndirectArea;
import io.vring.engine.chain.ChainReader;
import io.vring.engine.chain.ChainWriter;
import io.vring.engine.chain.DescriptorChain;
import io.vring.engine.memory.GuardedRegion;
import io.vring.engine.memory.GuestMemory;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.nio.charset.StandardCharsets;

import static io.vring.engine.VirtioFeatures.EVENT_IDX;
import static io.vring.engine.VirtioFeatures.INDIRECT_DESC;
import static io.vring.engine.VirtioFeatures.IN_ORDER;
import static io.vring.engine.VirtioFeatures.bit;
import static io.vring.engine.split.SpecRing.INDIRECT;
import static io.vring.engine.split.SpecRing.NEXT;
import static io.vring.engine.split.SpecRing.WRITE;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The wire format, both directions, against bytes laid out by hand from the spec's tables
 * (reference/virtqueue.md §1.2): rings the device reads are written byte by byte at literal
 * offsets, and what the engine writes is compared byte for byte with the spec encoding.
 */
class SplitGoldenBytesTest {
    private static final long GPA = 0x100000;
    private static final int N = 8;
    private static final long BUF = 0x110000;

    private Arena arena;
    private GuardedRegion guarded;
    private GuestMemory memory;
    private SpecRing ring;

    @BeforeEach
    void setUp() {
        arena = Arena.ofShared();
        guarded = new GuardedRegion(arena, GPA, 256 * 1024);
        memory = GuestMemory.of(guarded.region());
        ring = new SpecRing(guarded.region(), N, 0x100000, 0x101000, 0x102000);
    }

    @AfterEach
    void tearDown() {
        guarded.assertCanariesIntact();
        arena.close();
    }

    private SplitDeviceQueue device(long features) {
        return new SplitDeviceQueue("golden device", memory, N, ring.addresses(), features);
    }

    private void putText(long gpa, String text) {
        byte[] b = text.getBytes(StandardCharsets.US_ASCII);
        for (int i = 0; i < b.length; i++) {
            ring.put(gpa + i, b[i], 1);
        }
    }

    private static String readAll(DescriptorChain chain) {
        byte[] b = new byte[(int) chain.readableBytes()];
        assertEquals(b.length, new ChainReader().reset(chain).read(b, 0, b.length));
        return new String(b, StandardCharsets.US_ASCII);
    }

    private static void assertBuffer(DescriptorChain chain, int i, long gpa, int length, boolean writable) {
        assertEquals(gpa, chain.guestAddress(i), "address of buffer " + i);
        assertEquals(length, chain.length(i), "length of buffer " + i);
        assertEquals(writable, chain.isWritable(i), "writability of buffer " + i);
    }

    // ---- driver -> device: rings written by hand, read by SplitDeviceQueue ----

    @Test
    void deviceSeesAThreeDescriptorChainAsTwoReadableBuffersThenOneWritable() {
        SplitDeviceQueue device = device(0);
        putText(BUF, "hello, ");
        putText(BUF + 0x100, "world");
        ring.descriptor(5, BUF, 7, NEXT, 2);
        ring.descriptor(2, BUF + 0x100, 5, NEXT, 7);
        ring.descriptor(7, BUF + 0x200, 32, WRITE, 0);
        ring.availRing(0, 5);
        ring.availIdx(1);

        DescriptorChain chain = device.poll();

        assertNotNull(chain);
        assertEquals(5, chain.head());
        assertEquals(3, chain.descriptorCount());
        assertEquals(3, chain.bufferCount());
        assertEquals(2, chain.readableCount());
        assertEquals(1, chain.writableCount());
        assertBuffer(chain, 0, BUF, 7, false);
        assertBuffer(chain, 1, BUF + 0x100, 5, false);
        assertBuffer(chain, 2, BUF + 0x200, 32, true);
        assertEquals(12, chain.readableBytes());
        assertEquals(32, chain.writableBytes());
        assertEquals("hello, world", readAll(chain));
        assertNull(device.poll(), "avail idx 1 offers exactly one chain");

        ChainWriter writer = new ChainWriter().reset(chain);
        writer.write("reply".getBytes(StandardCharsets.US_ASCII), 0, 5);
        device.addUsed(chain, (int) writer.written());
        device.publish();
        assertArrayEquals("reply".getBytes(StandardCharsets.US_ASCII), ring.bytes(BUF + 0x200, 5));
        assertEquals(1, ring.usedIdx());
        assertArrayEquals(new byte[]{5, 0, 0, 0, 5, 0, 0, 0}, ring.usedElementBytes(0));
    }

    @Test
    void deviceSeesAnIndirectTableAsTheChainsBuffers() {
        SplitDeviceQueue device = device(bit(INDIRECT_DESC));
        long table = BUF + 0x1000;
        putText(BUF, "abc");
        putText(BUF + 0x100, "defg");
        // Table entries chain through next like the ring does, in any order (split rings).
        ring.tableEntry(table, 0, BUF, 3, NEXT, 2);
        ring.tableEntry(table, 2, BUF + 0x100, 4, NEXT, 1);
        ring.tableEntry(table, 1, BUF + 0x200, 64, WRITE, 0);
        ring.descriptor(3, table, 48, INDIRECT | WRITE, 0); // WRITE on the referencing descriptor is ignored
        ring.offer(3);

        DescriptorChain chain = device.poll();

        assertNotNull(chain);
        assertEquals(3, chain.head());
        assertEquals(1, chain.descriptorCount(), "an indirect table occupies its one ring descriptor");
        assertEquals(3, chain.bufferCount());
        assertBuffer(chain, 0, BUF, 3, false);
        assertBuffer(chain, 1, BUF + 0x100, 4, false);
        assertBuffer(chain, 2, BUF + 0x200, 64, true);
        assertEquals("abcdefg", readAll(chain));
    }

    @Test
    void deviceAcceptsTwoDirectDescriptorsFollowedByOneIndirect() {
        SplitDeviceQueue device = device(bit(INDIRECT_DESC));
        long table = BUF + 0x1000;
        putText(BUF, "12");
        putText(BUF + 0x100, "34");
        putText(BUF + 0x200, "56");
        ring.descriptor(0, BUF, 2, NEXT, 6);
        ring.descriptor(6, BUF + 0x100, 2, NEXT, 4);
        ring.descriptor(4, table, 32, INDIRECT, 0);
        ring.tableEntry(table, 0, BUF + 0x200, 2, NEXT, 1);
        ring.tableEntry(table, 1, BUF + 0x300, 16, WRITE, 0);
        ring.offer(0);

        DescriptorChain chain = device.poll();

        assertNotNull(chain, device.toString());
        assertEquals(3, chain.descriptorCount());
        assertEquals(4, chain.bufferCount());
        assertEquals(3, chain.readableCount());
        assertBuffer(chain, 0, BUF, 2, false);
        assertBuffer(chain, 1, BUF + 0x100, 2, false);
        assertBuffer(chain, 2, BUF + 0x200, 2, false);
        assertBuffer(chain, 3, BUF + 0x300, 16, true);
        assertEquals("123456", readAll(chain));
        assertFalse(device.isBroken());
    }

    @Test
    void availAndUsedIndicesWrapFrom65535ToZero() {
        // The device resumes at avail 65534 (SET_VRING_BASE) and finds used idx 65535 in the ring.
        ring.usedIdx(65535);
        SplitDeviceQueue device = new SplitDeviceQueue("wrap", memory, N, ring.addresses(), 0, 65534);
        ring.descriptor(1, BUF, 4, WRITE, 0);
        ring.descriptor(2, BUF + 0x100, 4, WRITE, 0);
        ring.descriptor(3, BUF + 0x200, 4, WRITE, 0);
        ring.availRing(65534 % N, 1);
        ring.availRing(65535 % N, 2);
        ring.availRing(0, 3);
        ring.availIdx(1); // 65534 + 3 (mod 2^16)

        int[] heads = new int[3];
        for (int i = 0; i < 3; i++) {
            DescriptorChain chain = device.poll();
            assertNotNull(chain, "chain " + i);
            heads[i] = chain.head();
            device.addUsed(chain, i + 1);
        }
        assertNull(device.poll());
        assertEquals(1, device.availPosition());
        assertArrayEquals(new int[]{1, 2, 3}, heads);

        device.publish();
        assertEquals(2, ring.usedIdx(), "65535 + 3 (mod 2^16)");
        assertEquals(1, ring.usedId(65535 % N));
        assertEquals(1, ring.usedLen(65535 % N));
        assertEquals(2, ring.usedId(0));
        assertEquals(2, ring.usedLen(0));
        assertEquals(3, ring.usedId(1));
        assertEquals(3, ring.usedLen(1));
    }

    // ---- device -> driver: what SplitDeviceQueue writes into the used ring ----

    @Test
    void deviceWritesUsedElementsAsU32IdAndLenAtFourPlusEightI() {
        int n = 1024;
        SpecRing big = new SpecRing(guarded.region(), n, 0x120000, 0x125000, 0x126000);
        big.fill(0x126000, 6 + 8 * n, (byte) 0xEE);
        big.usedIdx(0);
        SplitDeviceQueue device = new SplitDeviceQueue("big", memory, n, big.addresses(), 0);
        big.descriptor(0x0201, BUF, 0x1000, WRITE, 0);
        big.descriptor(0x0302, BUF + 0x1000, 0x1000, WRITE, 0);
        big.offer(0x0201);
        big.offer(0x0302);

        device.addUsed(device.poll(), 0x0203);
        device.addUsed(device.poll(), 0x0A0B);
        device.publish();

        assertArrayEquals(new byte[]{2, 0}, big.bytes(0x126000 + 2, 2), "used idx at offset 2");
        assertArrayEquals(new byte[]{0x01, 0x02, 0, 0, 0x03, 0x02, 0, 0}, big.bytes(0x126000 + 4, 8));
        assertArrayEquals(new byte[]{0x02, 0x03, 0, 0, 0x0B, 0x0A, 0, 0}, big.bytes(0x126000 + 12, 8));
        assertArrayEquals(new byte[]{(byte) 0xEE, (byte) 0xEE}, big.bytes(0x126000, 2), "used flags untouched");
        assertEquals(0xEEEEEEEEL, big.usedId(2), "nothing written past the published elements");
    }

    @Test
    void deviceWritesAvailEventAtFourPlusEightNWhenItAsksForKicksWithEventIdx() {
        SplitDeviceQueue device = device(bit(EVENT_IDX));
        for (int i = 0; i < 3; i++) {
            ring.descriptor(i, BUF + 0x100L * i, 4, WRITE, 0);
            ring.offer(i);
        }
        for (int i = 0; i < 3; i++) {
            device.addUsed(device.poll(), 0);
        }
        device.publish();

        assertFalse(device.enableNotification());

        assertArrayEquals(new byte[]{3, 0}, ring.bytes(0x102000 + 4 + 8 * N, 2));
        assertEquals(0, ring.usedFlags(), "with EVENT_IDX the flags stay 0");
    }

    @Test
    void deviceSetsAndClearsNoNotifyInUsedFlagsWithoutEventIdx() {
        SplitDeviceQueue device = device(0);

        device.disableNotification();
        assertArrayEquals(new byte[]{1, 0}, ring.bytes(0x102000, 2));

        device.enableNotification();
        assertArrayEquals(new byte[]{0, 0}, ring.bytes(0x102000, 2));
        assertEquals(0, ring.availEvent(), "avail_event is not touched without EVENT_IDX");
    }

    @Test
    void inOrderBatchWritesOneUsedElementWithTheLastHeadAndAdvancesIdxByTheBatchSize() {
        SplitDeviceQueue device = device(bit(IN_ORDER));
        ring.fill(0x102000 + 4, 8 * N, (byte) 0xEE);
        for (int i = 0; i < 4; i++) {
            ring.descriptor(i, BUF + 0x100L * i, 16, WRITE, 0);
            ring.offer(i);
        }
        for (int i = 0; i < 4; i++) {
            DescriptorChain chain = device.poll();
            device.addUsed(chain, i < 3 ? 16 : 5); // all but the last fully used
        }
        device.publish();

        assertEquals(4, ring.usedIdx());
        assertArrayEquals(new byte[]{3, 0, 0, 0, 5, 0, 0, 0}, ring.usedElementBytes(0));
        for (int slot = 1; slot < N; slot++) {
            assertEquals(0xEEEEEEEEL, ring.usedId(slot), "used slot " + slot + " must stay unwritten");
        }
    }

    @Test
    void inOrderBatchEndsAtAChainThatWasNotFullyUsed() {
        SplitDeviceQueue device = device(bit(IN_ORDER));
        ring.fill(0x102000 + 4, 8 * N, (byte) 0xEE);
        for (int i = 0; i < 4; i++) {
            ring.descriptor(i, BUF + 0x100L * i, 16, WRITE, 0);
            ring.offer(i);
        }
        int[] lens = {16, 7, 16, 16};
        for (int i = 0; i < 4; i++) {
            device.addUsed(device.poll(), lens[i]);
        }
        device.publish();

        // Two runs: chains 0-1 (ends at the short chain 1), then chains 2-3; each element sits at
        // the used index where its run starts.
        assertEquals(4, ring.usedIdx());
        assertArrayEquals(new byte[]{1, 0, 0, 0, 7, 0, 0, 0}, ring.usedElementBytes(0));
        assertEquals(0xEEEEEEEEL, ring.usedId(1));
        assertArrayEquals(new byte[]{3, 0, 0, 0, 16, 0, 0, 0}, ring.usedElementBytes(2));
        assertEquals(0xEEEEEEEEL, ring.usedId(3));
    }

    // ---- what SplitDriverQueue writes ----

    @Test
    void driverWritesDescriptorsAvailEntryAndIdxInTheSpecEncoding() {
        SplitDriverQueue driver = new SplitDriverQueue("golden driver", memory, N, ring.addresses(), 0, null);
        driver.addReadable(0x1122334455667788L, 0x0A0B0C0D);
        driver.addReadable(BUF + 0x100, 6);
        driver.addWritable(BUF + 0x200, 32);

        int head = driver.submit();

        assertEquals(0, ring.availIdx(), "not visible before publish");
        driver.publish();
        assertArrayEquals(new byte[]{1, 0}, ring.bytes(0x101000 + 2, 2), "avail idx at offset 2");
        assertEquals(head, ring.availRing(0));
        assertArrayEquals(new byte[]{(byte) head, 0}, ring.bytes(0x101000 + 4, 2), "ring[0] at offset 4");
        int second = ring.descNext(head);
        int third = ring.descNext(second);
        assertArrayEquals(SpecRing.encodedDescriptor(0x1122334455667788L, 0x0A0B0C0D, NEXT, second), ring.descriptorBytes(head));
        assertArrayEquals(SpecRing.encodedDescriptor(BUF + 0x100, 6, NEXT, third), ring.descriptorBytes(second));
        assertArrayEquals(SpecRing.encodedDescriptor(BUF + 0x200, 32, WRITE, 0), ring.descriptorBytes(third));
        assertEquals(3, java.util.stream.IntStream.of(head, second, third).distinct().count());
        assertEquals(0, ring.availFlags());
        assertEquals(0, ring.usedEvent());
    }

    @Test
    void driverPutsSuccessiveHeadsInSuccessiveAvailSlotsAndPublishesOnceForTheBatch() {
        SplitDriverQueue driver = new SplitDriverQueue("golden driver", memory, N, ring.addresses(), 0, null);
        int[] heads = new int[3];
        for (int i = 0; i < 3; i++) {
            driver.addWritable(BUF + 0x100L * i, 8);
            heads[i] = driver.submit();
        }
        assertEquals(0, ring.availIdx());
        driver.publish();
        assertEquals(3, ring.availIdx());
        for (int i = 0; i < 3; i++) {
            assertEquals(heads[i], ring.availRing(i));
            assertArrayEquals(SpecRing.encodedDescriptor(BUF + 0x100L * i, 8, WRITE, 0), ring.descriptorBytes(heads[i]));
        }
    }

    @Test
    void driverWritesAnIndirectTableAndOneIndirectDescriptor() {
        long area = 0x130000;
        SplitDriverQueue driver = new SplitDriverQueue("golden driver", memory, N, ring.addresses(), bit(INDIRECT_DESC),
                new IndirectArea(area, 4));
        driver.addReadable(BUF, 10);
        driver.addReadable(BUF + 0x100, 20);
        driver.addWritable(BUF + 0x200, 30);

        int head = driver.submitIndirect();
        driver.publish();

        long table = area + (long) head * 4 * 16;
        assertArrayEquals(SpecRing.encodedDescriptor(table, 48, INDIRECT, 0), ring.descriptorBytes(head));
        assertArrayEquals(SpecRing.encodedDescriptor(BUF, 10, NEXT, 1), ring.tableEntryBytes(table, 0));
        assertArrayEquals(SpecRing.encodedDescriptor(BUF + 0x100, 20, NEXT, 2), ring.tableEntryBytes(table, 1));
        assertArrayEquals(SpecRing.encodedDescriptor(BUF + 0x200, 30, WRITE, 0), ring.tableEntryBytes(table, 2));
        assertEquals(head, ring.availRing(0));
        assertEquals(1, ring.availIdx());
    }

    @Test
    void driverSetsAndClearsNoInterruptInAvailFlagsWithoutEventIdx() {
        SplitDriverQueue driver = new SplitDriverQueue("golden driver", memory, N, ring.addresses(), 0, null);

        driver.disableUsedNotification();
        assertArrayEquals(new byte[]{1, 0}, ring.bytes(0x101000, 2));

        driver.enableUsedNotification();
        assertArrayEquals(new byte[]{0, 0}, ring.bytes(0x101000, 2));
        assertEquals(0, ring.usedEvent());
    }

    @Test
    void driverWritesUsedEventAtFourPlusTwoNWithEventIdx() {
        SplitDriverQueue driver = new SplitDriverQueue("golden driver", memory, N, ring.addresses(), bit(EVENT_IDX), null);
        SplitDeviceQueue device = device(bit(EVENT_IDX));
        for (int i = 0; i < 3; i++) {
            driver.addWritable(BUF + 0x100L * i, 8);
            driver.submit();
        }
        driver.publish();
        for (int i = 0; i < 3; i++) {
            device.addUsed(device.poll(), 0);
        }
        device.publish();
        for (int i = 0; i < 3; i++) {
            assertNotEquals(-1, driver.pollUsed());
        }

        assertFalse(driver.enableUsedNotification());

        assertArrayEquals(new byte[]{3, 0}, ring.bytes(0x101000 + 4 + 2 * N, 2));
        assertEquals(0, ring.availFlags(), "with EVENT_IDX the flags stay 0");
    }

    @Test
    void driverZeroesAllThreeRingAreasWhenItTakesThemOver() {
        ring.fill(0x100000, 16 * N, (byte) 0x77);
        ring.fill(0x101000, 6 + 2 * N, (byte) 0x77);
        ring.fill(0x102000, 6 + 8 * N, (byte) 0x77);

        new SplitDriverQueue("golden driver", memory, N, ring.addresses(), 0, null);

        assertArrayEquals(new byte[16 * N], ring.bytes(0x100000, 16 * N));
        assertArrayEquals(new byte[6 + 2 * N], ring.bytes(0x101000, 6 + 2 * N));
        assertArrayEquals(new byte[6 + 8 * N], ring.bytes(0x102000, 6 + 8 * N));
    }
}
