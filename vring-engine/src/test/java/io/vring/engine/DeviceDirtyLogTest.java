package io.vring.engine;

import io.vring.engine.chain.DescriptorChain;
import io.vring.engine.inflight.InflightBuffer;
import io.vring.engine.memory.DirtyLog;
import io.vring.engine.memory.SharedMemory;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.util.ArrayList;
import java.util.List;
import java.util.TreeSet;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

/**
 * A device queue with dirty logging on marks exactly the pages a migration must copy again: those of
 * the first {@code bytesWritten} bytes of each completed chain's writable part (completed by
 * flyweight or by token, after other chains were polled), and, with VHOST_VRING_F_LOG, the pages of
 * its own used-area stores at the ring's log address (packed: the used descriptors in the descriptor
 * ring too). Nothing else: not the readable buffers, not the bytes past bytesWritten.
 */
class DeviceDirtyLogTest {
    private static final int SIZE = 16;
    private static final long PAGE = 4096;
    /** The ring's log address (log_guest_addr): any GPA the log covers, here far from everything. */
    private static final long USED_LOG = 0x400_0000L;

    private final List<AutoCloseable> open = new ArrayList<>();

    @AfterEach
    void closeAll() throws Exception {
        for (AutoCloseable c : open) {
            c.close();
        }
    }

    private record Rig(RingPlacement plan, DriverQueue driver, DeviceQueue device, DirtyLog log, SharedMemory logMemory) {
        long data(int page) {
            return plan.dataGpa() + page * PAGE;
        }

        /** One chain: 100 readable bytes in data page 0, then writable data pages 2 (from 4000, 200 bytes: into 3) and 5-6. */
        void offerChain(int base) {
            driver.addReadable(data(base), 100);
            driver.addWritable(data(base + 2) + 4000, 200);
            driver.addWritable(data(base + 5), (int) (2 * PAGE));
            driver.submit();
            driver.publish();
        }

        TreeSet<Long> marked() {
            TreeSet<Long> pages = new TreeSet<>();
            for (long p = 0; p < log.pages(); p++) {
                if (log.isDirty(p)) {
                    pages.add(p);
                }
            }
            return pages;
        }

        void clearLog() {
            logMemory.segment().fill((byte) 0);
        }
    }

    private Rig rig(RingKind kind, boolean tracked) {
        long features = VirtioFeatures.bit(VirtioFeatures.VERSION_1)
                | (kind == RingKind.PACKED ? VirtioFeatures.bit(VirtioFeatures.RING_PACKED) : 0);
        RingPlacement plan = RingPlacement.plan(kind, SIZE, 0, 0, 16 * PAGE);
        SharedMemory guest = SharedMemory.create("dirty-guest", plan.totalBytes());
        SharedMemory logMemory = SharedMemory.create("dirty-log", 4096); // 32768 pages: 128 MiB
        SharedMemory inflight = SharedMemory.create("dirty-inflight", InflightBuffer.size(kind, 1, SIZE));
        open.add(guest);
        open.add(logMemory);
        open.add(inflight);
        var memory = guest.guestMemory(0);
        DriverQueue driver = kind.driver("driver", memory, SIZE, plan.rings(), features, null);
        DeviceQueue device = kind.device("device", memory, SIZE, plan.rings(), features);
        if (tracked) {
            device.trackInflight(InflightBuffer.of(kind, inflight.segment(), 1, SIZE), 0);
        }
        return new Rig(plan, driver, device, DirtyLog.over(logMemory.segment()), logMemory);
    }

    private static TreeSet<Long> pages(long... gpas) {
        TreeSet<Long> s = new TreeSet<>();
        for (long g : gpas) {
            s.add(g / PAGE);
        }
        return s;
    }

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void completingAChainMarksTheWrittenPagesOfItsWritablePartOnly(RingKind kind) {
        for (boolean tracked : new boolean[] {false, true}) {
            Rig r = rig(kind, tracked);
            r.device.logDirty(r.log, -1);
            r.offerChain(0);
            DescriptorChain c = r.device.poll();
            assertNotNull(c);
            r.device.addUsed(c, 300); // 200 bytes in pages 2-3, then 100 in page 5
            r.device.publish();
            r.device.disableNotification();
            r.device.enableNotification();
            assertEquals(pages(r.data(2), r.data(3), r.data(5)), r.marked(), kind + (tracked ? " tracked" : ""));
        }
    }

    /**
     * A chain completed by token long after it was polled: meanwhile other chains went through the
     * ring, so its ring slots hold used descriptors and then the driver's next chains. The queue still
     * marks the first chain's pages, and none of the others'.
     */
    @ParameterizedTest
    @EnumSource(RingKind.class)
    void completingByTokenAfterItsRingSlotsWereReusedMarksThatChainsPages(RingKind kind) {
        for (boolean tracked : new boolean[] {false, true}) {
            Rig r = rig(kind, tracked);
            r.device.logDirty(r.log, -1);
            r.offerChain(0);
            int held = r.device.poll().token();
            for (int round = 0; round < 12; round++) { // 12 chains of 3 slots: past the end of a 16-slot ring
                r.offerChain(7);
                DescriptorChain other = r.device.poll();
                assertNotNull(other, "round " + round);
                r.device.addUsed(other, 0);
                r.device.publish();
                assertEquals(1, drain(r.driver));
            }
            assertEquals(new TreeSet<Long>(), r.marked(), "nothing written yet");
            r.device.addUsed(held, 201); // all of the first writable buffer, one byte of the second
            r.device.publish();
            assertEquals(pages(r.data(2), r.data(3), r.data(5)), r.marked(), kind + (tracked ? " tracked" : ""));
            assertEquals(1, drain(r.driver));
        }
    }

    /**
     * Logging may start while chains are in flight. Split walks the head's descriptors again (still
     * the device's); packed finds a tracked chain in the inflight region; an untracked packed chain
     * fetched before logging started cannot be found again, and says so.
     */
    @ParameterizedTest
    @EnumSource(RingKind.class)
    void aChainFetchedBeforeLoggingStartedIsMarkedWhereItCanBeFound(RingKind kind) {
        for (boolean tracked : new boolean[] {false, true}) {
            Rig r = rig(kind, tracked);
            r.offerChain(0);
            r.offerChain(7);
            int first = r.device.poll().token();
            DescriptorChain second = r.device.poll(); // the flyweight now shows the second chain
            r.device.logDirty(r.log, -1);
            r.device.addUsed(first, 201);
            boolean findable = kind == RingKind.SPLIT || tracked;
            assertEquals(findable ? pages(r.data(2), r.data(3), r.data(5)) : new TreeSet<Long>(), r.marked(),
                    kind + (tracked ? " tracked" : ""));
            if (!findable) {
                assertEquals(1, ((io.vring.engine.packed.PackedDeviceQueue) r.device).unloggedCompletions());
            }
            r.device.addUsed(second, 0);
            r.device.publish();
            assertEquals(2, drain(r.driver));
        }
    }

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void withVringLogTheUsedAreaStoresAreMarkedToo(RingKind kind) {
        Rig r = rig(kind, false);
        r.device.logDirty(r.log, USED_LOG);
        r.offerChain(0);
        r.device.addUsed(r.device.poll(), 0);
        r.device.publish();
        TreeSet<Long> expected = kind == RingKind.SPLIT
                ? pages(USED_LOG)                               // used element and used idx, at the log address
                : pages(r.plan.rings().descriptorArea());       // the used descriptor, in the ring itself
        assertEquals(expected, r.marked());

        r.clearLog();
        r.device.disableNotification(); // split: used flags; packed: the device event structure
        assertEquals(pages(USED_LOG), r.marked());
        r.clearLog();
        r.device.enableNotification();
        assertEquals(pages(USED_LOG), r.marked());

        r.clearLog();
        r.device.logDirty(null, USED_LOG);
        r.offerChain(0);
        r.device.addUsed(r.device.poll(), 300);
        r.device.publish();
        r.device.disableNotification();
        assertEquals(new TreeSet<Long>(), r.marked(), "logging off: nothing marked");
        assertEquals(null, r.device.dirtyLog());
    }

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void withoutVringLogTheUsedAreaIsNotMarked(RingKind kind) {
        Rig r = rig(kind, false);
        r.device.logDirty(r.log, -1);
        r.offerChain(0);
        r.device.addUsed(r.device.poll(), 0);
        r.device.publish();
        r.device.disableNotification();
        r.device.enableNotification();
        assertEquals(new TreeSet<Long>(), r.marked());
    }

    private static int drain(DriverQueue driver) {
        int n = 0;
        while (driver.pollUsed() >= 0) {
            n++;
        }
        return n;
    }
}
