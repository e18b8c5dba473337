package io.vring.engine.packed;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vring.engine.QueueBrokenException;
import io.vring.engine.RingAddresses;
import io.vring.engine.chain.DescriptorChain;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * One test per way a hostile peer can break the ring's rules. Each checks the reason, that the error
 * notifier fired once, that the broken queue writes nothing more, that a second queue on the same
 * memory keeps serving, and that no byte outside guest memory changed.
 *
 * <p>Guest memory: region A at GPA 0x100000 (64 KiB), a hole, region B at 0x120000 (64 KiB).
 */
class PackedHostileDriverTest {
    private static final int SIZE = 4;
    private static final long A = 0x10_0000;
    private static final long HOLE = 0x11_0000;
    private static final long B = 0x12_0000;
    private static final long BUFFERS = A + 0x2000;
    private static final long TABLE = A + 0x3000;

    private GuardedMemory m;
    private PackedDeviceQueue victim;
    private PackedDriverQueue bystanderDriver;
    private PackedDeviceQueue bystander;
    private int errors;

    private static RingAddresses rings(long at) {
        return new RingAddresses(at, at + 16 * SIZE, at + 16 * SIZE + 4);
    }

    @BeforeEach
    void open() {
        m = new GuardedMemory(A, 0x1_0000, B, 0x1_0000);
        victim = new PackedDeviceQueue("victim", m.memory, SIZE, rings(A), PackedRig.PLAIN);
        victim.errorNotifier(() -> errors++);
        bystanderDriver = new PackedDriverQueue("bystander driver", m.memory, SIZE, rings(A + 0x1000), PackedRig.PLAIN, null);
        bystander = new PackedDeviceQueue("bystander", m.memory, SIZE, rings(A + 0x1000), PackedRig.PLAIN);
    }

    @AfterEach
    void close() {
        m.close();
    }

    /** A descriptor of the victim's ring, written by a hostile driver. */
    private void descriptor(int slot, long addr, int len, int id, int flags) {
        long at = A + 16L * slot;
        m.putLong(at, addr);
        m.putInt(at + 8, len);
        m.putShort(at + 12, id);
        m.putShort(at + 14, flags);
    }

    private void entry(int index, long addr, int len, int flags) {
        long at = TABLE + 16L * index;
        m.putLong(at, addr);
        m.putInt(at + 8, len);
        m.putShort(at + 14, flags);
    }

    private void assertVictimBroken(String reasonPart) {
        assertNull(victim.poll());
        assertTrue(victim.isBroken());
        assertTrue(victim.brokenReason().contains(reasonPart), () -> "reason: " + victim.brokenReason());
        assertEquals(1, errors, "the error notifier fires once");

        byte[] before = m.snapshot();
        victim.addUsed((1 << 16) | 3, 0);
        victim.publish();
        victim.enableNotification();
        victim.disableNotification();
        victim.needsNotification();
        assertNull(victim.poll());
        assertArrayEquals(before, m.snapshot(), "a broken queue writes nothing");
        assertEquals(1, errors);

        assertBystanderServes();
        assertTrue(m.canariesIntact());
    }

    private void assertBystanderServes() {
        bystanderDriver.addReadable(BUFFERS + 0x800, 16);
        bystanderDriver.addWritable(BUFFERS + 0x900, 16);
        int id = bystanderDriver.submit();
        bystanderDriver.publish();
        DescriptorChain c = bystander.poll();
        assertNotNull(c, () -> String.valueOf(bystander.brokenReason()));
        bystander.addUsed(c, 16);
        bystander.publish();
        assertEquals(id, bystanderDriver.pollUsed());
        assertEquals(16, bystanderDriver.usedLength());
    }

    @Test
    void aListLongerThanTheRingBreaksTheQueue() {
        for (int slot = SIZE - 1; slot >= 0; slot--) {
            descriptor(slot, BUFFERS, 8, 0, 0x0081); // NEXT everywhere: a list that never ends
        }
        assertVictimBroken("runs past 4 descriptors");
    }

    @ParameterizedTest(name = "len {0}")
    @CsvSource({"40, len 40", "0, len 0", "80, len 80", "-16, len 4294967280"})
    void anIndirectTableOfBadLengthBreaksTheQueue(int len, String reason) {
        entry(0, BUFFERS, 8, 0);
        descriptor(0, TABLE, len, 0, 0x0084);
        assertVictimBroken(reason + ": must be a non-zero multiple of 16 no larger than 64");
    }

    @Test
    void aNestedIndirectTableBreaksTheQueue() {
        entry(0, BUFFERS, 8, 0);
        entry(1, TABLE, 16, 0x0004);
        descriptor(0, TABLE, 32, 0, 0x0084);
        assertVictimBroken("entry 1 is itself INDIRECT");
    }

    @Test
    void indirectTogetherWithNextBreaksTheQueue() {
        entry(0, BUFFERS, 8, 0);
        descriptor(1, BUFFERS, 8, 0, 0x0080);
        descriptor(0, TABLE, 16, 0, 0x0085);
        assertVictimBroken("slot 0 has both INDIRECT and NEXT");
    }

    @Test
    void anIndirectTableOutsideOneRegionBreaksTheQueue() {
        descriptor(0, B + 0x1_0000 - 16, 32, 0, 0x0084);
        assertVictimBroken("is not inside one guest memory region");
    }

    @Test
    void aBufferOutsideGuestMemoryBreaksTheQueue() {
        descriptor(0, 0xDEAD_0000_0000L, 64, 0, 0x0082);
        assertVictimBroken("slot 0 (GPA 0xdead00000000, len 64) is outside guest memory");
    }

    @Test
    void aBufferRunningIntoAHoleBetweenRegionsBreaksTheQueue() {
        descriptor(0, HOLE - 32, 64, 0, 0x0082);
        assertVictimBroken("slot 0 (GPA 0x10ffe0, len 64) runs into a hole");
    }

    @Test
    void aBufferInsideAnIndirectTableOutsideGuestMemoryBreaksTheQueue() {
        entry(0, BUFFERS, 8, 0);
        entry(1, HOLE + 8, 8, 2);
        descriptor(0, TABLE, 32, 0, 0x0084);
        assertVictimBroken("indirect table at slot 0 entry 1 (GPA 0x110008, len 8) is outside guest memory");
    }

    @Test
    void aReadableBufferAfterAWritableOneBreaksTheQueue() {
        descriptor(1, BUFFERS + 64, 8, 0, 0x0080);
        descriptor(0, BUFFERS, 8, 0, 0x0083);
        assertVictimBroken("slot 1 (GPA 0x102040, len 8) is device-readable after a device-writable buffer");
    }

    @Test
    void slotsReofferedWhileTheDeviceStillOwnsThemBreakTheQueue() {
        for (int slot = 0; slot < SIZE; slot++) {
            descriptor(slot, BUFFERS, 8, slot, 0x0080);
        }
        for (int i = 0; i < SIZE; i++) {
            assertNotNull(victim.poll());
        }
        descriptor(0, BUFFERS, 8, 0, 0x8000); // lap 2 flags on a slot never marked used
        assertVictimBroken("was made available again while the device still owns it");
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource({
            "descriptor ring misaligned, 0x100008, 0x100040, 0x100044, descriptor ring at GPA 0x100008 is not 16-byte aligned",
            "driver event misaligned, 0x100000, 0x100042, 0x100048, driver event structure at GPA 0x100042 is not 4-byte aligned",
            "device event misaligned, 0x100000, 0x100040, 0x100046, device event structure at GPA 0x100046 is not 4-byte aligned",
            "ring in the hole, 0x110000, 0x100040, 0x100044, descriptor ring: GPA 0x110000 is outside guest memory",
            "ring runs off its region, 0x10fff0, 0x100040, 0x100044, runs past the end of its region"})
    void ringAreasTheDriverGotWrongLeaveTheQueueBrokenFromTheStart(String what, long desc, long drv, long dev, String reason) {
        PackedDeviceQueue q = new PackedDeviceQueue(what, m.memory, SIZE, new RingAddresses(desc, drv, dev), PackedRig.PLAIN);
        int[] signals = new int[1];
        q.errorNotifier(() -> signals[0]++);
        assertTrue(q.isBroken());
        assertTrue(q.brokenReason().contains(reason), () -> "reason: " + q.brokenReason());
        assertEquals(1, signals[0], "a queue broken before its notifier was set reports when it is set");
        assertNull(q.poll());
        assertBystanderServes();
        assertTrue(m.canariesIntact());
    }

    @ParameterizedTest(name = "size {0}")
    @CsvSource({"0", "32769", "-1"})
    void aQueueSizeOutsideTheSpecLeavesTheQueueBroken(int size) {
        PackedDeviceQueue q = new PackedDeviceQueue("bad size", m.memory, size, rings(A), PackedRig.PLAIN);
        assertTrue(q.brokenReason().contains("queue size " + size + " is outside 1..32768"), q.brokenReason());
        assertNull(q.poll());
        assertFalse(q.enableNotification());
    }

    // ---- the driver side against a hostile device ----

    private PackedDriverQueue victimDriver;
    private int driverErrors;

    private int offerOne() {
        victimDriver = new PackedDriverQueue("victim driver", m.memory, SIZE, rings(A), PackedRig.PLAIN, null);
        victimDriver.errorNotifier(() -> driverErrors++);
        victimDriver.addReadable(BUFFERS, 16);
        victimDriver.addWritable(BUFFERS + 16, 48);
        return victimDriver.submit();
    }

    /** A used descriptor at slot 0, written by a hostile device. */
    private void used(int id, int len) {
        m.putInt(A + 8, len);
        m.putShort(A + 12, id);
        m.putShort(A + 14, 0x8082);
    }

    private void assertVictimDriverBroken(String reasonPart) {
        QueueBrokenException e = assertThrows(QueueBrokenException.class, victimDriver::pollUsed);
        assertTrue(e.getMessage().contains(reasonPart), () -> "reason: " + e.getMessage());
        assertEquals(1, driverErrors);
        assertTrue(victimDriver.isBroken());
        assertThrows(QueueBrokenException.class, victimDriver::pollUsed);
        assertThrows(QueueBrokenException.class, () -> victimDriver.addReadable(BUFFERS, 1));
        assertThrows(QueueBrokenException.class, victimDriver::submit);
        assertThrows(QueueBrokenException.class, victimDriver::publish);
        assertThrows(QueueBrokenException.class, victimDriver::needsKick);
        assertThrows(QueueBrokenException.class, victimDriver::enableUsedNotification);
        assertEquals(1, driverErrors);
        assertBystanderServes();
        assertTrue(m.canariesIntact());
    }

    @Test
    void aUsedIdThatIsNotOutstandingBreaksTheDriverQueue() {
        int id = offerOne();
        used(id + 1, 0);
        assertVictimDriverBroken("used descriptor at slot 0 carries id 1, which is not outstanding");
    }

    @Test
    void aUsedIdBeyondTheQueueSizeBreaksTheDriverQueue() {
        offerOne();
        used(4000, 0);
        assertVictimDriverBroken("carries id 4000, not below the queue size 4");
    }

    @Test
    void aUsedLengthOverTheWritableBytesBreaksTheDriverQueue() {
        int id = offerOne();
        used(id, 999);
        assertVictimDriverBroken("reports id 0 len 999 over its writable limit 48");
    }
}
