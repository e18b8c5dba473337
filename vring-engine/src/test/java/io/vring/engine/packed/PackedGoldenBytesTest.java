package io.vring.engine.packed;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vring.engine.chain.DescriptorChain;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * Ring bytes written by hand from the spec's tables (descriptor: addr u64 @0, len u32 @8, id u16 @12,
 * flags u16 @14; NEXT 0x1, WRITE 0x2, INDIRECT 0x4, AVAIL 0x80, USED 0x8000), read by the device;
 * and the driver's writes compared with the same encoding byte for byte. The literals here are
 * deliberately not PackedLayout's constants: they check them.
 */
class PackedGoldenBytesTest {
    private PackedRig rig;

    @AfterEach
    void close() {
        if (rig != null) {
            assertTrue(rig.guarded.canariesIntact());
            rig.close();
        }
    }

    private void descriptor(long at, long addr, int len, int id, int flags) {
        GuardedMemory m = rig.guarded;
        m.putLong(at, addr);
        m.putInt(at + 8, len);
        m.putShort(at + 12, id);
        m.putShort(at + 14, flags);
    }

    @Test
    void deviceReadsAHandWrittenChainOfThreeDescriptorsAndEchoesTheLastId() {
        rig = new PackedRig(8, 1);
        long b = rig.scratch();
        descriptor(rig.slot(0, 1), b + 100, 200, 0, 0x0081);
        descriptor(rig.slot(0, 2), b + 300, 300, 5, 0x0082);
        descriptor(rig.slot(0, 0), b, 100, 0, 0x0081); // head flags last, as a driver would
        PackedDeviceQueue device = rig.device(0, PackedRig.PLAIN);

        DescriptorChain chain = device.poll();
        assertNotNull(chain, () -> String.valueOf(device.brokenReason()));
        assertEquals(5, chain.head());
        assertEquals(3, chain.descriptorCount());
        assertEquals(3, chain.bufferCount());
        assertEquals(2, chain.readableCount());
        assertEquals(300, chain.readableBytes());
        assertEquals(300, chain.writableBytes());
        assertEquals(b + 100, chain.guestAddress(1));
        assertEquals((3 << 16) | 5, chain.token());
        assertEquals(3 | 1 << 15, device.availPosition());
        assertNull(device.poll());

        device.addUsed(chain, 123);
        device.publish();
        assertArrayEquals(new byte[] {0, 0, 0, 0, 0, 0, 0, 0, 123, 0, 0, 0, 5, 0, (byte) 0x82, (byte) 0x80},
                usedBytes(rig.slot(0, 0)));
        assertEquals(0x0081, rig.guarded.getU16(rig.slot(0, 1) + 14), "the device writes one used descriptor per list");
    }

    private byte[] usedBytes(long at) {
        byte[] b = rig.guarded.bytes(at, 16);
        for (int i = 0; i < 8; i++) {
            b[i] = 0; // addr is unused in a used descriptor; the device leaves it alone
        }
        return b;
    }

    @Test
    void deviceReadsAHandWrittenIndirectTable() {
        rig = new PackedRig(4, 1);
        long table = rig.scratch();
        long b = table + 256;
        descriptor(table, b, 10, 0, 0x0000);
        descriptor(table + 16, b + 10, 20, 0, 0x0001); // NEXT inside a table means nothing
        descriptor(table + 32, b + 30, 40, 0, 0x0002);
        descriptor(rig.slot(0, 0), table, 48, 9, 0x0084);
        PackedDeviceQueue device = rig.device(0, PackedRig.PLAIN);

        DescriptorChain chain = device.poll();
        assertNotNull(chain, () -> String.valueOf(device.brokenReason()));
        assertEquals(9, chain.head());
        assertEquals(1, chain.descriptorCount());
        assertEquals(3, chain.bufferCount());
        assertEquals(30, chain.readableBytes());
        assertEquals(40, chain.writableBytes());
        assertEquals((1 << 16) | 9, chain.token());
        assertEquals(1 | 1 << 15, device.availPosition());
    }

    @Test
    void deviceFlipsItsWrapCountersAfterTheLastSlot() {
        rig = new PackedRig(3, 1);
        long b = rig.scratch();
        PackedDeviceQueue device = rig.device(0, PackedRig.PLAIN);
        for (int slot = 0; slot < 3; slot++) {
            descriptor(rig.slot(0, slot), b + 64L * slot, 64, 10 + slot, 0x0082); // lap 1: AVAIL=1 USED=0
        }
        for (int slot = 0; slot < 3; slot++) {
            DescriptorChain c = device.poll();
            assertNotNull(c);
            assertEquals(10 + slot, c.head());
            device.addUsed(c, slot == 1 ? 0 : 7);
        }
        assertEquals(0, device.availPosition(), "slot 0, wrap 0");
        assertNull(device.poll(), "slot 0 still holds lap 1 flags");
        device.publish();
        assertEquals(0x8082, rig.guarded.getU16(rig.slot(0, 0) + 14));
        assertEquals(0x8080, rig.guarded.getU16(rig.slot(0, 1) + 14), "no WRITE when nothing was written");
        assertEquals(0x8082, rig.guarded.getU16(rig.slot(0, 2) + 14));
        assertFalse(device.hasAvailable(), "used lap-1 flags (1,1) are not available in lap 2");

        descriptor(rig.slot(0, 0), b, 64, 20, 0x8002); // lap 2: AVAIL=0 USED=1
        DescriptorChain c = device.poll();
        assertNotNull(c);
        assertEquals(20, c.head());
        device.addUsed(c, 1);
        device.publish();
        assertEquals(0x0002, rig.guarded.getU16(rig.slot(0, 0) + 14), "lap 2 used: AVAIL=0 USED=0");
        assertEquals(20, rig.guarded.getU16(rig.slot(0, 0) + 12));
        assertEquals(1, device.usedPosition(), "slot 1, wrap 0");
    }

    @Test
    void driverZeroesTheRingAndBothEventStructures() {
        rig = new PackedRig(4, 1);
        rig.guarded.at(rig.ring(0), 16 * 4 + 8).fill((byte) 0x5A);
        rig.driver(0, PackedRig.PLAIN);
        assertArrayEquals(new byte[16 * 4 + 8], rig.guarded.bytes(rig.ring(0), 16 * 4 + 8));
    }

    @Test
    void driverWritesAChainAsTheSpecEncodesIt() {
        rig = new PackedRig(4, 1);
        PackedDriverQueue driver = rig.driver(0, PackedRig.PLAIN);
        driver.addReadable(0x1122_3344_5566L, 16);
        driver.addWritable(0x2000, 0x0102_0304);
        int id = driver.submit();
        assertEquals(0, id);
        assertArrayEquals(new byte[] {
                0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0, 0, 16, 0, 0, 0, 0, 0, (byte) 0x81, 0,
                0, 0x20, 0, 0, 0, 0, 0, 0, 4, 3, 2, 1, 0, 0, (byte) 0x82, 0,
        }, rig.guarded.bytes(rig.ring(0), 32));
        assertEquals(2, driver.freeDescriptors());
    }

    @Test
    void driverWritesAnIndirectChainAsOneSlotAndASequentialTable() {
        rig = new PackedRig(4, 1);
        PackedDriverQueue driver = rig.driver(0, PackedRig.PLAIN);
        driver.addReadable(0x3000, 8);
        driver.addWritable(0x4000, 24);
        int id = driver.submitIndirect();
        long table = rig.indirect(0).tableAddress(id);
        byte[] t = le(table);
        assertArrayEquals(new byte[] {
                t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], 32, 0, 0, 0, (byte) id, 0, (byte) 0x84, 0,
        }, rig.guarded.bytes(rig.slot(0, 0), 16));
        assertArrayEquals(new byte[] {
                0, 0x30, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0,
                0, 0x40, 0, 0, 0, 0, 0, 0, 24, 0, 0, 0, 0, 0, 2, 0,
        }, rig.guarded.bytes(table, 32));
        assertEquals(3, driver.freeDescriptors());
    }

    private static byte[] le(long v) {
        byte[] b = new byte[8];
        for (int i = 0; i < 8; i++) {
            b[i] = (byte) (v >>> (8 * i));
        }
        return b;
    }

    @Test
    void driverMarksSecondLapSlotsWithAvailClearAndUsedSet() {
        rig = new PackedRig(2, 1);
        PackedDriverQueue driver = rig.driver(0, PackedRig.PLAIN);
        driver.addWritable(0x5000, 8);
        int a = driver.submit();
        driver.addWritable(0x6000, 8);
        int b = driver.submit();
        // The device's used descriptors, by hand: lap 1 used = AVAIL=1 USED=1, WRITE, len 8.
        rig.guarded.putShort(rig.slot(0, 0) + 12, b);
        rig.guarded.putInt(rig.slot(0, 0) + 8, 8);
        rig.guarded.putShort(rig.slot(0, 0) + 14, 0x8082);
        rig.guarded.putShort(rig.slot(0, 1) + 12, a);
        rig.guarded.putInt(rig.slot(0, 1) + 8, 3);
        rig.guarded.putShort(rig.slot(0, 1) + 14, 0x8082);
        assertEquals(b, driver.pollUsed());
        assertEquals(8, driver.usedLength());
        assertEquals(a, driver.pollUsed());
        assertEquals(3, driver.usedLength());
        assertEquals(-1, driver.pollUsed());

        driver.addReadable(0x7000, 4);
        driver.addWritable(0x7100, 4);
        driver.submit();
        assertEquals(0x8001, rig.guarded.getU16(rig.slot(0, 0) + 14), "lap 2 head: AVAIL=0 USED=1 NEXT");
        assertEquals(0x8002, rig.guarded.getU16(rig.slot(0, 1) + 14), "lap 2 tail: AVAIL=0 USED=1 WRITE");
    }

    @Test
    void driverWrapsAListAcrossTheEndOfTheRing() {
        rig = new PackedRig(3, 1);
        PackedDriverQueue driver = rig.driver(0, PackedRig.PLAIN);
        driver.addReadable(0x1000, 4);
        driver.addReadable(0x1000, 4);
        int first = driver.submit();
        rig.guarded.putShort(rig.slot(0, 0) + 12, first);
        rig.guarded.putShort(rig.slot(0, 0) + 14, 0x8080);
        assertEquals(first, driver.pollUsed());
        driver.addReadable(0x2000, 4);
        driver.addReadable(0x3000, 4);
        driver.addWritable(0x4000, 4);
        int id = driver.submit();
        assertEquals(0x0081, rig.guarded.getU16(rig.slot(0, 2) + 14), "head in lap 1");
        assertEquals(0x8001, rig.guarded.getU16(rig.slot(0, 0) + 14), "second descriptor in lap 2");
        assertEquals(0x8002, rig.guarded.getU16(rig.slot(0, 1) + 14), "last descriptor in lap 2");
        assertEquals(id, rig.guarded.getU16(rig.slot(0, 1) + 12), "the id sits in the last descriptor");
    }
}
