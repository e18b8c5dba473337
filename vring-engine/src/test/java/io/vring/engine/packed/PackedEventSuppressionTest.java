package io.vring.engine.packed;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vring.engine.chain.DescriptorChain;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Notification suppression on both sides: ENABLE / DISABLE / DESC, and the packed vring_need_event
 * window at the wrap boundary. Event words are written by hand: flags (u16 @2) in the high half,
 * off_wrap (u16 @0, slot in bits 0-14, wrap in bit 15) in the low half.
 */
class PackedEventSuppressionTest {
    private PackedRig rig;
    private PackedDriverQueue driver;
    private PackedDeviceQueue device;

    @AfterEach
    void close() {
        if (rig != null) {
            assertTrue(rig.guarded.canariesIntact());
            rig.close();
        }
    }

    private void open(int size, long features) {
        rig = new PackedRig(size, 1);
        driver = rig.driver(0, features);
        device = rig.device(0, features);
    }

    /** k one-slot chains go round: offered, used, published, collected. */
    private void roundTrip(int k) {
        for (int i = 0; i < k; i++) {
            driver.addWritable(rig.writable(0, i), 8);
            assertTrue(driver.submit() >= 0);
        }
        driver.publish();
        for (int i = 0; i < k; i++) {
            DescriptorChain c = device.poll();
            assertNotNull(c);
            device.addUsed(c, 8);
        }
        device.publish();
        for (int i = 0; i < k; i++) {
            assertTrue(driver.pollUsed() >= 0);
        }
    }

    private void driverEvent(int flags, int slot, int wrap) {
        rig.guarded.putInt(rig.driverEvent(0), flags << 16 | wrap << 15 | slot);
    }

    @ParameterizedTest(name = "event {0}, new {1}, old {2}: {3}")
    @CsvSource({"10, 13, 10, true", "12, 13, 10, true", "13, 13, 10, false", "0, 2, 65534, true"})
    void needEventFollowsTheReferenceTable(int event, int newIdx, int oldIdx, boolean expected) {
        assertEquals(expected, PackedEventWindow.needEvent(event, newIdx, oldIdx));
    }

    @Test
    void deviceCallsWhenEnabledNotWhenDisabledAndNotWithoutNewUsedEntries() {
        open(4, PackedRig.ALL_FEATURES);
        roundTrip(1);
        driverEvent(1, 0, 0);
        assertFalse(device.needsNotification(), "DISABLE");
        roundTrip(1);
        driverEvent(0, 0, 0);
        assertTrue(device.needsNotification(), "ENABLE");
        assertFalse(device.needsNotification(), "nothing published since the last check");
    }

    @Test
    void deviceTreatsDescAsEnableWithoutEventIdx() {
        open(4, PackedRig.PLAIN);
        roundTrip(1);
        driverEvent(2, 3, 0);
        assertTrue(device.needsNotification());
    }

    @ParameterizedTest(name = "event slot {0} wrap {1}: call {2}")
    @CsvSource({"6, 1, true", "7, 1, true", "0, 0, true", "1, 0, true", "2, 0, false", "5, 1, false", "3, 0, false"})
    void deviceCallsOnlyWhenTheUsedWindowAcrossTheWrapCoversTheEventSlot(int slot, int wrap, boolean expected) {
        open(8, PackedRig.ALL_FEATURES);
        roundTrip(6);
        device.needsNotification(); // the window now starts at slot 6, wrap 1
        driverEvent(2, slot, wrap);
        roundTrip(4);               // slots 6, 7 (wrap 1), 0, 1 (wrap 0): new position slot 2, wrap 0
        assertEquals(2, device.usedPosition());
        assertEquals(expected, device.needsNotification());
    }

    @Test
    void driverEnableWritesTheNextUsedSlotAndReportsUsedEntriesAlreadyThere() {
        open(4, PackedRig.ALL_FEATURES);
        roundTrip(3);
        assertFalse(driver.enableUsedNotification());
        assertArrayEquals(new byte[] {3, (byte) 0x80, 2, 0}, rig.guarded.bytes(rig.driverEvent(0), 4));
        driver.addWritable(rig.writable(0, 0), 8);
        driver.submit();
        driver.addWritable(rig.writable(0, 1), 8);
        driver.submit();
        device.addUsed(device.poll(), 8);
        device.addUsed(device.poll(), 8);
        device.publish();
        assertTrue(device.needsNotification(), "the driver asked for slot 3 of lap 1");
        assertTrue(driver.enableUsedNotification(), "a used entry is already waiting");
        driver.disableUsedNotification();
        assertEquals(1, rig.guarded.getU16(rig.driverEvent(0) + 2));
    }

    @Test
    void deviceEnableWritesTheNextAvailSlotAndReportsChainsAlreadyThere() {
        open(4, PackedRig.ALL_FEATURES);
        roundTrip(3);
        assertFalse(device.enableNotification());
        assertArrayEquals(new byte[] {3, (byte) 0x80, 2, 0}, rig.guarded.bytes(rig.deviceEvent(0), 4));
        driver.addWritable(rig.writable(0, 0), 8);
        driver.submit();
        assertTrue(device.enableNotification(), "the re-check after the fence sees the new chain");
    }

    @Test
    void driverKicksOnlyWhenItsAddedSlotsCrossTheDevicesEventSlot() {
        open(4, PackedRig.ALL_FEATURES);
        roundTrip(3);
        device.enableNotification();                    // wants a kick for slot 3, wrap 1
        driver.addWritable(rig.writable(0, 0), 8);
        driver.submit();                                // slot 3
        driver.addWritable(rig.writable(0, 1), 8);
        driver.submit();                                // slot 0 of lap 2
        driver.publish();
        assertTrue(driver.needsKick());
        assertFalse(driver.needsKick(), "nothing published since the last check");
        device.addUsed(device.poll(), 8);
        device.publish();
        driver.pollUsed();
        driver.addWritable(rig.writable(0, 2), 8);
        driver.submit();                                // slot 1, wrap 0: past the event already passed
        driver.publish();
        assertFalse(driver.needsKick());
        device.enableNotification();                    // now wants slot 1, wrap 0... which is there
        device.disableNotification();
        driver.addWritable(rig.writable(0, 3), 8);
        driver.submit();
        driver.publish();
        assertFalse(driver.needsKick(), "DISABLE");
    }

    @Test
    void driverKicksOnEveryBatchWhenTheDeviceEnablesWithoutEventIdx() {
        open(4, PackedRig.PLAIN);
        assertFalse(device.enableNotification());
        assertArrayEquals(new byte[] {0, 0, 0, 0}, rig.guarded.bytes(rig.deviceEvent(0), 4));
        driver.addWritable(rig.writable(0, 0), 8);
        driver.submit();
        driver.publish();
        assertTrue(driver.needsKick());
        device.disableNotification();
        assertArrayEquals(new byte[] {0, 0, 1, 0}, rig.guarded.bytes(rig.deviceEvent(0), 4));
        driver.addWritable(rig.writable(0, 1), 8);
        driver.submit();
        driver.publish();
        assertFalse(driver.needsKick());
    }
}
