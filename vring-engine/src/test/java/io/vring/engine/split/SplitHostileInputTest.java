package io.vring.engine.split;

import io.vring.engine.QueueBrokenException;
import io.vring.engine.RingAddresses;
import io.vring.engine.chain.ChainReader;
import io.vring.engine.chain.ChainWriter;
import io.vring.engine.chain.DescriptorChain;
import io.vring.engine.memory.GuardedRegion;
import io.vring.engine.memory.GuestMemory;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static io.vring.engine.VirtioFeatures.INDIRECT_DESC;
import static io.vring.engine.VirtioFeatures.bit;
import static io.vring.engine.split.SpecRing.INDIRECT;
import static io.vring.engine.split.SpecRing.NEXT;
import static io.vring.engine.split.SpecRing.WRITE;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Everything a hostile driver (or device) can write into the rings (reference/virtqueue.md §5):
 * each violation breaks that one queue with a reason naming the offending value, signals the error
 * notifier exactly once, and from then on the queue neither reads chains nor writes a byte; another
 * queue on the same memory keeps serving, and no byte outside guest memory is touched.
 *
 * <p>Guest memory: region A at 0x200000 (1 MiB) with region B GPA-adjacent at 0x300000 (64 KiB),
 * then a hole, then region C at 0x400000 (64 KiB). Each region is fenced by canary margins.
 */
class SplitHostileInputTest {
    private static final int N = 8;
    private static final long A = 0x200000;
    private static final long B = 0x300000;
    private static final long HOLE = 0x310000;
    private static final long C = 0x400000;
    private static final long BUF = 0x240000;

    private Arena arena;
    private GuardedRegion regionA;
    private GuardedRegion regionB;
    private GuardedRegion regionC;
    private GuestMemory memory;
    /** The hostile driver's rings, written by hand. */
    private SpecRing ring;
    private int errorSignals;

    private SplitDriverQueue healthyDriver;
    private SplitDeviceQueue healthyDevice;

    @BeforeEach
    void setUp() {
        arena = Arena.ofShared();
        regionA = new GuardedRegion(arena, A, 1 << 20);
        regionB = new GuardedRegion(arena, B, 64 * 1024);
        regionC = new GuardedRegion(arena, C, 64 * 1024);
        memory = GuestMemory.of(regionA.region(), regionB.region(), regionC.region());
        ring = new SpecRing(regionA.region(), N, 0x200000, 0x201000, 0x202000);
        RingAddresses healthy = new RingAddresses(0x210000, 0x211000, 0x212000);
        healthyDriver = new SplitDriverQueue("healthy driver", memory, N, healthy, 0, null);
        healthyDevice = new SplitDeviceQueue("healthy device", memory, N, healthy, 0);
    }

    @AfterEach
    void tearDown() {
        regionA.assertCanariesIntact();
        regionB.assertCanariesIntact();
        regionC.assertCanariesIntact();
        arena.close();
    }

    private SplitDeviceQueue hostileDevice(long features) {
        SplitDeviceQueue device = new SplitDeviceQueue("hostile device", memory, N, ring.addresses(), features);
        device.errorNotifier(() -> errorSignals++);
        return device;
    }

    /** Hand-written driver: one chain at {@code head} made available. */
    private void offer(int head) {
        ring.offer(head);
    }

    private byte[] guestBytes() {
        byte[] a = regionA.segment().toArray(ValueLayout.JAVA_BYTE);
        byte[] b = regionB.segment().toArray(ValueLayout.JAVA_BYTE);
        byte[] c = regionC.segment().toArray(ValueLayout.JAVA_BYTE);
        byte[] all = new byte[a.length + b.length + c.length];
        System.arraycopy(a, 0, all, 0, a.length);
        System.arraycopy(b, 0, all, a.length, b.length);
        System.arraycopy(c, 0, all, a.length + b.length, c.length);
        return all;
    }

    /**
     * The queue broke on its first poll, for a reason that names {@code mentions}; it signalled once,
     * keeps returning null and writes nothing, and the healthy queue still serves.
     */
    private void assertPollBreaks(SplitDeviceQueue device, String... mentions) {
        assertNull(device.poll(), "a hostile chain is never handed to the device");
        assertBrokenHarmlessly(device, mentions);
    }

    private void assertBrokenHarmlessly(SplitDeviceQueue device, String... mentions) {
        assertTrue(device.isBroken(), device.toString());
        String reason = device.brokenReason();
        for (String m : mentions) {
            assertTrue(reason.contains(m), "reason \"" + reason + "\" should mention " + m);
        }
        assertEquals(1, errorSignals, "error notifier signals");

        byte[] before = guestBytes();
        for (int i = 0; i < 3; i++) {
            assertNull(device.poll());
        }
        assertFalse(device.hasAvailable());
        device.addUsed(0, 1);
        device.publish();
        assertFalse(device.needsNotification());
        assertFalse(device.enableNotification());
        device.disableNotification();
        device.markBroken("a second reason");
        assertArrayEquals(before, guestBytes(), "a broken queue writes nothing to guest memory");
        assertEquals(reason, device.brokenReason(), "the first reason wins");
        assertEquals(1, errorSignals, "error notifier signals");

        assertHealthyQueueServes();
    }

    private void assertHealthyQueueServes() {
        for (int round = 0; round < 2 * N; round++) {
            long buf = BUF + 0x100L * (round % N);
            regionA.segment().set(ValueLayout.JAVA_LONG_UNALIGNED, buf - A, 1000L + round);
            healthyDriver.addReadable(buf, 8);
            healthyDriver.addWritable(buf + 8, 8);
            int id = healthyDriver.submit();
            healthyDriver.publish();
            DescriptorChain chain = healthyDevice.poll();
            assertNotNull(chain, healthyDevice.toString());
            byte[] payload = new byte[8];
            new ChainReader().reset(chain).read(payload, 0, 8);
            ChainWriter writer = new ChainWriter().reset(chain);
            writer.write(payload, 0, 8);
            healthyDevice.addUsed(chain, (int) writer.written());
            healthyDevice.publish();
            assertEquals(id, healthyDriver.pollUsed());
            assertEquals(8, healthyDriver.usedLength());
            assertEquals(1000L + round, regionA.segment().get(ValueLayout.JAVA_LONG_UNALIGNED, buf + 8 - A));
        }
        assertFalse(healthyDevice.isBroken());
    }

    // ---- the avail ring ----

    @Test
    void availIndexJumpBeyondQueueSizeBreaksTheQueue() {
        SplitDeviceQueue device = hostileDevice(0);
        ring.availIdx(N + 1);
        assertPollBreaks(device, "avail idx jumped from 0 to 9", "size 8");
    }

    @Test
    void availIndexMovingBackwardsIsAJumpBeyondQueueSize() {
        SplitDeviceQueue device = hostileDevice(0);
        ring.availIdx(65535);
        assertPollBreaks(device, "65535");
    }

    @Test
    void headIndexAtOrBeyondQueueSizeBreaksTheQueue() {
        SplitDeviceQueue device = hostileDevice(0);
        offer(N);
        assertPollBreaks(device, "head 8", "size 8");
    }

    // ---- descriptor chains ----

    @Test
    void nextIndexAtOrBeyondQueueSizeBreaksTheQueue() {
        SplitDeviceQueue device = hostileDevice(0);
        ring.descriptor(0, BUF, 8, NEXT, 0xFFFF);
        offer(0);
        assertPollBreaks(device, "next 65535");
    }

    @Test
    void aLoopInTheDescriptorTableBreaksTheQueue() {
        SplitDeviceQueue device = hostileDevice(0);
        ring.descriptor(3, BUF, 8, NEXT, 4);
        ring.descriptor(4, BUF + 0x100, 8, NEXT, 3);
        offer(3);
        assertPollBreaks(device, "head 3", "loop");
    }

    @Test
    void aChainLongerThanTheQueueBreaksTheQueue() {
        SplitDeviceQueue device = hostileDevice(0);
        for (int i = 0; i < N; i++) {
            ring.descriptor(i, BUF + 0x10L * i, 8, NEXT, (i + 1) % N); // all eight, then back to 0
        }
        offer(0);
        assertPollBreaks(device, "longer than the queue (8)");
    }

    @Test
    void aChainOfExactlyQueueSizeDescriptorsIsLegal() {
        SplitDeviceQueue device = hostileDevice(0);
        for (int i = 0; i < N; i++) {
            ring.descriptor(i, BUF + 0x10L * i, 8, i == N - 1 ? 0 : NEXT, i + 1);
        }
        offer(0);
        DescriptorChain chain = device.poll();
        assertNotNull(chain, device.toString());
        assertEquals(N, chain.bufferCount());
        assertEquals(0, errorSignals);
    }

    @Test
    void readableAfterWritableBreaksTheQueue() {
        SplitDeviceQueue device = hostileDevice(0);
        ring.descriptor(0, BUF, 8, WRITE | NEXT, 5);
        ring.descriptor(5, BUF + 0x100, 8, 0, 0);
        offer(0);
        assertPollBreaks(device, "descriptor 5", "readable after a writable");
    }

    @Test
    void readableAfterAnEmptyWritableBreaksTheQueue() {
        SplitDeviceQueue device = hostileDevice(0);
        ring.descriptor(0, BUF, 0, WRITE | NEXT, 5);
        ring.descriptor(5, BUF + 0x100, 8, 0, 0);
        offer(0);
        assertPollBreaks(device, "descriptor 5", "readable after a writable");
    }

    // ---- indirect tables ----

    @Test
    void indirectWithoutIndirectDescNegotiatedBreaksTheQueue() {
        SplitDeviceQueue device = hostileDevice(0);
        ring.tableEntry(BUF, 0, BUF + 0x100, 8, 0, 0);
        ring.descriptor(6, BUF, 16, INDIRECT, 0);
        offer(6);
        assertPollBreaks(device, "descriptor 6", "INDIRECT_DESC");
    }

    @Test
    void indirectTogetherWithNextBreaksTheQueue() {
        SplitDeviceQueue device = hostileDevice(bit(INDIRECT_DESC));
        ring.tableEntry(BUF, 0, BUF + 0x100, 8, 0, 0);
        ring.descriptor(6, BUF, 16, INDIRECT | NEXT, 1);
        ring.descriptor(1, BUF + 0x200, 8, 0, 0);
        offer(6);
        assertPollBreaks(device, "descriptor 6", "INDIRECT and NEXT");
    }

    @Test
    void nestedIndirectTableBreaksTheQueue() {
        SplitDeviceQueue device = hostileDevice(bit(INDIRECT_DESC));
        long inner = BUF + 0x1000;
        ring.tableEntry(inner, 0, BUF + 0x100, 8, 0, 0);
        ring.tableEntry(BUF, 0, BUF + 0x200, 8, NEXT, 1);
        ring.tableEntry(BUF, 1, inner, 16, INDIRECT, 0);
        ring.descriptor(2, BUF, 32, INDIRECT, 0);
        offer(2);
        assertPollBreaks(device, "entry 1", "nested");
    }

    @Test
    void indirectLengthNotAMultipleOf16BreaksTheQueue() {
        SplitDeviceQueue device = hostileDevice(bit(INDIRECT_DESC));
        ring.tableEntry(BUF, 0, BUF + 0x100, 8, NEXT, 1);
        ring.tableEntry(BUF, 1, BUF + 0x200, 8, 0, 0);
        ring.descriptor(2, BUF, 40, INDIRECT, 0);
        offer(2);
        assertPollBreaks(device, "length 40");
    }

    @Test
    void indirectLengthZeroBreaksTheQueue() {
        SplitDeviceQueue device = hostileDevice(bit(INDIRECT_DESC));
        ring.descriptor(2, BUF, 0, INDIRECT, 0);
        offer(2);
        assertPollBreaks(device, "length 0");
    }

    @Test
    void indirectTableWithMoreEntriesThanTheQueueBreaksTheQueue() {
        SplitDeviceQueue device = hostileDevice(bit(INDIRECT_DESC));
        for (int i = 0; i <= N; i++) {
            ring.tableEntry(BUF, i, BUF + 0x1000 + 0x10L * i, 8, i == N ? 0 : NEXT, i + 1);
        }
        ring.descriptor(2, BUF, 16 * (N + 1), INDIRECT, 0);
        offer(2);
        assertPollBreaks(device, "9 entries", "queue size 8");
    }

    @Test
    void indirectTableLoopBreaksTheQueue() {
        SplitDeviceQueue device = hostileDevice(bit(INDIRECT_DESC));
        ring.tableEntry(BUF, 0, BUF + 0x100, 8, NEXT, 1);
        ring.tableEntry(BUF, 1, BUF + 0x200, 8, NEXT, 0);
        ring.descriptor(2, BUF, 32, INDIRECT, 0);
        offer(2);
        assertPollBreaks(device, "loops");
    }

    @Test
    void indirectTableNextBeyondTheTableBreaksTheQueue() {
        SplitDeviceQueue device = hostileDevice(bit(INDIRECT_DESC));
        ring.tableEntry(BUF, 0, BUF + 0x100, 8, NEXT, 2);
        ring.tableEntry(BUF, 1, BUF + 0x200, 8, 0, 0);
        ring.descriptor(2, BUF, 32, INDIRECT, 0);
        offer(2);
        assertPollBreaks(device, "next 2", "table has 2");
    }

    @Test
    void indirectTableCrossingOutOfItsRegionBreaksTheQueue() {
        SplitDeviceQueue device = hostileDevice(bit(INDIRECT_DESC));
        long table = HOLE - 32; // two entries in region B, two in the hole
        ring.descriptor(2, table, 64, INDIRECT, 0);
        offer(2);
        assertPollBreaks(device, "0x" + Long.toHexString(table));
    }

    @Test
    void indirectTableOutsideGuestMemoryBreaksTheQueue() {
        SplitDeviceQueue device = hostileDevice(bit(INDIRECT_DESC));
        ring.descriptor(2, 0xDEAD0000L, 32, INDIRECT, 0);
        offer(2);
        assertPollBreaks(device, "0xdead0000");
    }

    // ---- buffer addresses ----

    @Test
    void bufferAddressOutsideGuestMemoryBreaksTheQueue() {
        SplitDeviceQueue device = hostileDevice(0);
        ring.descriptor(0, 0x9000_0000L, 8, 0, 0);
        offer(0);
        assertPollBreaks(device, "0x90000000");
    }

    @Test
    void bufferWhoseLengthWrapsTheAddressSpaceBreaksTheQueue() {
        SplitDeviceQueue device = hostileDevice(0);
        ring.descriptor(0, 0xFFFF_FFFF_FFFF_FF00L, 0x200, WRITE, 0);
        offer(0);
        assertPollBreaks(device, "0xffffffffffffff00");
    }

    @Test
    void bufferRunningIntoAHoleBetweenTwoRegionsBreaksTheQueue() {
        SplitDeviceQueue device = hostileDevice(0);
        ring.descriptor(0, HOLE - 0x100, 0x200, WRITE, 0);
        offer(0);
        assertPollBreaks(device, "0x" + Long.toHexString(HOLE - 0x100), "512");
    }

    @Test
    void bufferSpanningTwoGpaAdjacentRegionsIsLegalAndYieldsTwoBuffers() {
        SplitDeviceQueue device = hostileDevice(0);
        MemorySegment a = regionA.segment();
        MemorySegment b = regionB.segment();
        for (int i = 0; i < 0x100; i++) {
            a.set(ValueLayout.JAVA_BYTE, (B - A) - 0x100 + i, (byte) i);
            b.set(ValueLayout.JAVA_BYTE, i, (byte) (0x100 + i));
        }
        ring.descriptor(0, B - 0x100, 0x200, NEXT, 1);
        ring.descriptor(1, B - 0x10, 0x20, WRITE, 0);
        offer(0);

        DescriptorChain chain = device.poll();

        assertNotNull(chain, device.toString());
        assertEquals(2, chain.descriptorCount());
        assertEquals(4, chain.bufferCount());
        assertEquals(2, chain.readableCount());
        assertEquals(B - 0x100, chain.guestAddress(0));
        assertEquals(0x100, chain.length(0));
        assertEquals(B, chain.guestAddress(1));
        assertEquals(0x100, chain.length(1));
        assertEquals(B - 0x10, chain.guestAddress(2));
        assertEquals(0x10, chain.length(2));
        assertEquals(B, chain.guestAddress(3));
        assertEquals(0x10, chain.length(3));
        assertNotSame(chain.segment(0), chain.segment(1));
        byte[] read = new byte[0x200];
        assertEquals(0x200, new ChainReader().reset(chain).read(read, 0, 0x200));
        for (int i = 0; i < 0x200; i++) {
            assertEquals((byte) i, read[i], "byte " + i);
        }
        byte[] reply = new byte[0x20];
        java.util.Arrays.fill(reply, (byte) 0x5C);
        new ChainWriter().reset(chain).write(reply, 0, 0x20);
        assertEquals((byte) 0x5C, a.get(ValueLayout.JAVA_BYTE, (B - A) - 0x10));
        assertEquals((byte) 0x5C, b.get(ValueLayout.JAVA_BYTE, 0x0F));
        assertFalse(device.isBroken());
        assertEquals(0, errorSignals);
    }

    // ---- ring placement and size (the queue starts broken) ----

    @Test
    void misalignedDescriptorTableBreaksTheQueue() {
        ring = new SpecRing(regionA.region(), N, 0x200008, 0x201000, 0x202000);
        assertBrokenHarmlessly(hostileDevice(0), "0x200008", "16-byte aligned");
    }

    @Test
    void misalignedAvailRingBreaksTheQueue() {
        ring = new SpecRing(regionA.region(), N, 0x200000, 0x201001, 0x202000);
        assertBrokenHarmlessly(hostileDevice(0), "0x201001", "2-byte aligned");
    }

    @Test
    void misalignedUsedRingBreaksTheQueue() {
        ring = new SpecRing(regionA.region(), N, 0x200000, 0x201000, 0x202002);
        assertBrokenHarmlessly(hostileDevice(0), "0x202002", "4-byte aligned");
    }

    @Test
    void ringAreaOutsideGuestMemoryBreaksTheQueue() {
        ring = new SpecRing(regionA.region(), N, 0x200000, 0x201000, HOLE - 16);
        assertBrokenHarmlessly(hostileDevice(0), "0x" + Long.toHexString(HOLE - 16));
    }

    @ParameterizedTest(name = "size {0}")
    @ValueSource(ints = {0, 3, 6, 1000, 65536, -8})
    void invalidQueueSizeBreaksTheQueue(int size) {
        SplitDeviceQueue device = new SplitDeviceQueue("hostile device", memory, size, ring.addresses(), 0);
        device.errorNotifier(() -> errorSignals++);
        assertBrokenHarmlessly(device, "queue size " + size);
    }

    // ---- the device is untrusted by the driver ----

    private SplitDriverQueue hostileDriverVictim() {
        SplitDriverQueue driver = new SplitDriverQueue("victim driver", memory, N, ring.addresses(), 0, null);
        driver.errorNotifier(() -> errorSignals++);
        driver.addReadable(BUF, 8);
        driver.addWritable(BUF + 0x100, 8);
        assertEquals(0, driver.submit());
        driver.publish();
        return driver;
    }

    private void assertDriverBroken(SplitDriverQueue driver, String... mentions) {
        QueueBrokenException e = assertThrows(QueueBrokenException.class, driver::pollUsed);
        for (String m : mentions) {
            assertTrue(e.getMessage().contains(m), "message \"" + e.getMessage() + "\" should mention " + m);
        }
        assertTrue(driver.isBroken());
        assertTrue(driver.brokenReason().contains(mentions[0]));
        assertEquals(1, errorSignals, "error notifier signals");
        byte[] before = guestBytes();
        assertThrows(QueueBrokenException.class, driver::pollUsed);
        assertThrows(QueueBrokenException.class, () -> driver.addWritable(BUF, 8));
        assertThrows(QueueBrokenException.class, driver::submit);
        assertThrows(QueueBrokenException.class, driver::publish);
        assertThrows(QueueBrokenException.class, driver::needsKick);
        assertThrows(QueueBrokenException.class, driver::enableUsedNotification);
        assertArrayEquals(before, guestBytes(), "a broken driver queue writes nothing");
        assertEquals(1, errorSignals, "error notifier signals");
        assertHealthyQueueServes();
    }

    @Test
    void usedIdThatIsNotOutstandingBreaksTheDriverQueue() {
        SplitDriverQueue driver = hostileDriverVictim();
        ring.usedElement(0, 5, 0);
        ring.usedIdx(1);
        assertDriverBroken(driver, "id 5", "not outstanding");
    }

    @Test
    void usedIdBeyondQueueSizeBreaksTheDriverQueue() {
        SplitDriverQueue driver = hostileDriverVictim();
        ring.usedElement(0, 0xFFFF_FFFFL, 0);
        ring.usedIdx(1);
        assertDriverBroken(driver, "id 4294967295");
    }

    @Test
    void usedLengthLargerThanTheChainsWritableBytesBreaksTheDriverQueue() {
        SplitDriverQueue driver = hostileDriverVictim();
        ring.usedElement(0, 0, 9);
        ring.usedIdx(1);
        assertDriverBroken(driver, "9 bytes", "8 writable bytes");
    }

    @Test
    void usedIndexJumpBreaksTheDriverQueue() {
        SplitDriverQueue driver = hostileDriverVictim();
        ring.usedElement(0, 0, 8);
        ring.usedIdx(2);
        assertDriverBroken(driver, "from 0 to 2", "1 chains outstanding");
    }

    @Test
    void usedIdReturnedTwiceBreaksTheDriverQueue() {
        SplitDriverQueue driver = hostileDriverVictim();
        driver.addWritable(BUF + 0x200, 8);
        assertTrue(driver.submit() > 0);
        driver.publish();
        ring.usedElement(0, 0, 8);
        ring.usedElement(1, 0, 8);
        ring.usedIdx(2);
        assertEquals(0, driver.pollUsed());
        assertDriverBroken(driver, "id 0", "not outstanding");
    }
}
