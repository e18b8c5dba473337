package io.vring.engine.split;

import io.vring.engine.EventIndex;
import io.vring.engine.memory.GuardedRegion;
import io.vring.engine.memory.GuestMemory;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.Arena;

import static io.vring.engine.VirtioFeatures.EVENT_IDX;
import static io.vring.engine.VirtioFeatures.bit;
import static io.vring.engine.split.SpecRing.WRITE;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Event suppression (reference/virtqueue.md §3.2, §3.4): when the device calls the driver and when
 * the driver kicks the device, with flags and with EVENT_IDX, across the 16-bit wrap.
 */
class SplitNotificationTest {
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
        for (int i = 0; i < N; i++) {
            ring.descriptor(i, BUF + 0x100L * i, 16, WRITE, 0);
        }
    }

    @AfterEach
    void tearDown() {
        guarded.assertCanariesIntact();
        arena.close();
    }

    // ---- vring_need_event ----

    @ParameterizedTest(name = "old {0}, new {1}, event {2} -> {3}")
    @CsvSource({
            "10, 13, 10, true",      // 10 in [10,13)
            "10, 13, 12, true",      // 12 in [10,13)
            "10, 13, 13, false",     // the peer waits for idx to pass 13
            "10, 13, 9, false",      // already passed before this window
            "65534, 2, 0, true",     // the window wraps
            "65534, 2, 65535, true",
            "65534, 2, 2, false",
            "65535, 0, 65535, true",
            "0, 0, 0, false",        // empty window
    })
    void needEventIsTrueExactlyWhenTheEventLiesInTheWindowJustWritten(int old, int now, int event, boolean expected) {
        assertEquals(expected, EventIndex.needsEvent(event, now, old));
    }

    // ---- device -> driver calls ----

    /** A device resuming with used idx {@code usedStart} in the ring, with {@code chains} chains used and published. */
    private SplitDeviceQueue deviceThatPublished(long features, int usedStart, int chains) {
        ring.usedIdx(usedStart);
        SplitDeviceQueue device = new SplitDeviceQueue("device", memory, N, ring.addresses(), features);
        for (int i = 0; i < chains; i++) {
            ring.offer(i);
        }
        for (int i = 0; i < chains; i++) {
            device.addUsed(device.poll(), 1);
        }
        device.publish();
        assertEquals((usedStart + chains) & 0xFFFF, ring.usedIdx());
        return device;
    }

    @ParameterizedTest(name = "used idx {0} + {1}, used_event {2} -> {3}")
    @CsvSource({
            "10, 3, 10, true",
            "10, 3, 12, true",
            "10, 3, 13, false",
            "10, 3, 9, false",
            "65534, 4, 0, true",
            "65534, 4, 65535, true",
            "65534, 4, 2, false",
            "65535, 1, 65535, true",
            "65535, 1, 0, false",
    })
    void deviceCallsWithEventIdxExactlyWhenUsedEventWasCrossed(int usedStart, int published, int usedEvent, boolean expected) {
        ring.usedEvent(usedEvent);
        SplitDeviceQueue device = deviceThatPublished(bit(EVENT_IDX), usedStart, published);
        assertEquals(expected, device.needsNotification());
    }

    @Test
    void deviceCallsWithoutEventIdxWhenNoInterruptIsClear() {
        SplitDeviceQueue device = deviceThatPublished(0, 0, 1);
        assertTrue(device.needsNotification());
    }

    @Test
    void deviceDoesNotCallWithoutEventIdxWhenNoInterruptIsSet() {
        ring.availFlags(1);
        SplitDeviceQueue device = deviceThatPublished(0, 0, 1);
        assertFalse(device.needsNotification());
    }

    @Test
    void deviceIgnoresNoInterruptWithEventIdx() {
        ring.availFlags(1);
        ring.usedEvent(0);
        SplitDeviceQueue device = deviceThatPublished(bit(EVENT_IDX), 0, 1);
        assertTrue(device.needsNotification());
    }

    @ParameterizedTest(name = "features {0}")
    @ValueSource(longs = {0, 1L << EVENT_IDX})
    void deviceDoesNotCallWhenNothingWasPublished(long features) {
        SplitDeviceQueue device = new SplitDeviceQueue("device", memory, N, ring.addresses(), features);
        assertFalse(device.needsNotification());
        ring.offer(0);
        device.addUsed(device.poll(), 1);
        assertFalse(device.needsNotification(), "staged but not published");
        device.publish();
        assertTrue(device.needsNotification());
        assertFalse(device.needsNotification(), "already told about these");
    }

    @Test
    void deviceChecksTheWholeWindowOfSeveralPublishesAtOnce() {
        ring.usedEvent(10);
        ring.usedIdx(10);
        SplitDeviceQueue device = new SplitDeviceQueue("device", memory, N, ring.addresses(), bit(EVENT_IDX));
        for (int i = 0; i < 3; i++) {
            ring.offer(i);
            device.addUsed(device.poll(), 1);
            device.publish();
        }
        assertTrue(device.needsNotification(), "used_event 10 lies in [10,13) although the last publish was [12,13)");
    }

    @Test
    void deviceCallsRegardlessOfUsedEventAfter65535EntriesWithoutACheck() {
        ring.usedEvent(65535);
        SplitDeviceQueue device = new SplitDeviceQueue("device", memory, N, ring.addresses(), bit(EVENT_IDX));
        for (int i = 0; i < 65535; i++) {
            ring.offer(i % N);
            device.addUsed(device.poll(), 1);
            device.publish();
        }
        // used_event 65535 is outside [0, 65535): by the formula no call, but the window is no longer
        // trustworthy, so the device calls (as vhost does with signalled_used_valid).
        assertTrue(device.needsNotification());
    }

    @Test
    void deviceDoesNotCallFor65534EntriesWhoseWindowMissesUsedEvent() {
        ring.usedEvent(65534);
        SplitDeviceQueue device = new SplitDeviceQueue("device", memory, N, ring.addresses(), bit(EVENT_IDX));
        for (int i = 0; i < 65534; i++) {
            ring.offer(i % N);
            device.addUsed(device.poll(), 1);
            device.publish();
        }
        assertFalse(device.needsNotification());
    }

    // ---- driver -> device kicks ----

    /** A driver and device that have passed {@code rounds} chains, with the kick window checked after each. */
    private SplitDriverQueue driverAt(long features, int rounds) {
        SplitDriverQueue driver = new SplitDriverQueue("driver", memory, N, ring.addresses(), features, null);
        SplitDeviceQueue device = new SplitDeviceQueue("device", memory, N, ring.addresses(), features);
        for (int i = 0; i < rounds; i++) {
            driver.addWritable(BUF, 16);
            driver.submit();
            driver.publish();
            driver.needsKick();
            device.addUsed(device.poll(), 0);
            device.publish();
            assertNotEquals(-1, driver.pollUsed());
        }
        return driver;
    }

    private void submit(SplitDriverQueue driver, int chains) {
        for (int i = 0; i < chains; i++) {
            driver.addWritable(BUF + 0x100L * i, 16);
            assertNotEquals(-1, driver.submit());
        }
        driver.publish();
    }

    @ParameterizedTest(name = "avail idx {0} + {1}, avail_event {2} -> {3}")
    @CsvSource({
            "10, 3, 10, true",
            "10, 3, 12, true",
            "10, 3, 13, false",
            "10, 3, 9, false",
            "65534, 4, 0, true",
            "65534, 4, 65535, true",
            "65534, 4, 2, false",
    })
    void driverKicksWithEventIdxExactlyWhenAvailEventWasCrossed(int availStart, int added, int availEvent, boolean expected) {
        SplitDriverQueue driver = driverAt(bit(EVENT_IDX), availStart);
        ring.availEvent(availEvent);
        submit(driver, added);
        assertEquals((availStart + added) & 0xFFFF, ring.availIdx());
        assertEquals(expected, driver.needsKick());
    }

    @Test
    void driverKicksWithoutEventIdxWhenNoNotifyIsClear() {
        SplitDriverQueue driver = driverAt(0, 0);
        submit(driver, 1);
        assertTrue(driver.needsKick());
    }

    @Test
    void driverDoesNotKickWithoutEventIdxWhenNoNotifyIsSet() {
        SplitDriverQueue driver = driverAt(0, 0);
        ring.usedFlags(1);
        submit(driver, 1);
        assertFalse(driver.needsKick());
    }

    @Test
    void driverIgnoresNoNotifyWithEventIdx() {
        SplitDriverQueue driver = driverAt(bit(EVENT_IDX), 0);
        ring.usedFlags(1);
        ring.availEvent(0);
        submit(driver, 1);
        assertTrue(driver.needsKick());
    }

    @ParameterizedTest(name = "features {0}")
    @ValueSource(longs = {0, 1L << EVENT_IDX})
    void driverDoesNotKickWhenNothingWasPublished(long features) {
        SplitDriverQueue driver = driverAt(features, 0);
        assertFalse(driver.needsKick());
        driver.addWritable(BUF, 16);
        driver.submit();
        assertFalse(driver.needsKick(), "submitted but not published");
        driver.publish();
        assertTrue(driver.needsKick());
        assertFalse(driver.needsKick(), "already kicked for this");
    }

    // ---- re-enabling before sleep ----

    @ParameterizedTest(name = "features {0}")
    @ValueSource(longs = {0, 1L << EVENT_IDX})
    void deviceEnableNotificationReportsAChainThatSlippedIn(long features) {
        SplitDriverQueue driver = new SplitDriverQueue("driver", memory, N, ring.addresses(), features, null);
        SplitDeviceQueue device = new SplitDeviceQueue("device", memory, N, ring.addresses(), features);
        device.disableNotification();
        assertFalse(device.enableNotification(), "nothing available: safe to sleep");

        device.disableNotification();
        submit(driver, 1);
        assertTrue(device.enableNotification(), "a chain arrived while kicks were off: must not sleep");
        assertNotNull(device.poll());
        assertFalse(device.enableNotification());
    }

    @ParameterizedTest(name = "features {0}")
    @ValueSource(longs = {0, 1L << EVENT_IDX})
    void deviceThatEnabledNotificationGetsAKickForTheNextChain(long features) {
        SplitDriverQueue driver = driverAt(features, 5);
        SplitDeviceQueue device = new SplitDeviceQueue("device", memory, N, ring.addresses(), features, 5);
        device.disableNotification();
        submit(driver, 1);
        if (features == 0) {
            assertFalse(driver.needsKick(), "NO_NOTIFY set");
        }
        assertNotNull(device.poll());
        assertFalse(device.enableNotification());
        submit(driver, 1);
        assertTrue(driver.needsKick());
    }

    @ParameterizedTest(name = "features {0}")
    @ValueSource(longs = {0, 1L << EVENT_IDX})
    void driverEnableUsedNotificationReportsAUsedChainThatSlippedIn(long features) {
        SplitDriverQueue driver = new SplitDriverQueue("driver", memory, N, ring.addresses(), features, null);
        SplitDeviceQueue device = new SplitDeviceQueue("device", memory, N, ring.addresses(), features);
        submit(driver, 2);
        driver.disableUsedNotification();
        assertFalse(driver.enableUsedNotification());

        driver.disableUsedNotification();
        device.addUsed(device.poll(), 0);
        device.publish();
        if (features == 0) {
            assertFalse(device.needsNotification(), "NO_INTERRUPT set");
        }
        assertTrue(driver.enableUsedNotification(), "a used chain arrived while calls were off: must not sleep");
        assertNotEquals(-1, driver.pollUsed());
        assertFalse(driver.enableUsedNotification());

        device.addUsed(device.poll(), 0);
        device.publish();
        assertTrue(device.needsNotification(), "the driver asked to hear about the next used chain");
    }
}
