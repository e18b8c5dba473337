package io.vring.engine.inflight;

import io.vring.engine.DeviceQueue;
import io.vring.engine.DriverQueue;
import io.vring.engine.RingAddresses;
import io.vring.engine.RingKind;
import io.vring.engine.RingPlacement;
import io.vring.engine.VirtioFeatures;
import io.vring.engine.chain.DescriptorChain;
import io.vring.engine.memory.GuestMemory;
import io.vring.engine.memory.SharedMemory;
import io.vring.engine.packed.PackedLayout;
import io.vring.engine.split.SplitLayout;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

import static io.vring.engine.inflight.InflightRegionException.Kind.CORRUPT;
import static io.vring.engine.inflight.InflightRegionException.Kind.INVALID_GEOMETRY;
import static io.vring.engine.inflight.InflightRegionException.Kind.QUEUE_SIZE_MISMATCH;
import static io.vring.engine.inflight.InflightRegionException.Kind.REGION_TOO_SMALL;
import static io.vring.engine.inflight.InflightRegionException.Kind.RING_MISMATCH;
import static io.vring.engine.inflight.InflightRegionException.Kind.UNSUPPORTED_VERSION;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * What {@code DeviceQueue.trackInflight} refuses, and the rules a tracked queue keeps: a region it
 * cannot trust is refused with the reason and the queue is marked broken; a buffer of the wrong
 * geometry is refused when it is mapped; tracking starts before the first chain or not at all; a
 * tracked queue refuses to complete what is not in flight and breaks when the driver re-offers what
 * the device still owns; and a packed batch rolled back by a kill can never surface to the driver.
 */
class DeviceInflightRegionTest {
    private static final int SIZE = 8;
    private static final ValueLayout.OfShort LE_U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong LE_U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final List<AutoCloseable> open = new ArrayList<>();

    @AfterEach
    void closeAll() throws Exception {
        for (AutoCloseable c : open) {
            c.close();
        }
    }

    /** A driver, device queues on demand, and a one-queue inflight buffer, each over a memfd. */
    private final class Rig {
        final RingKind kind;
        final long features;
        final RingPlacement plan;
        final SharedMemory guest;
        final GuestMemory memory;
        final SharedMemory inflight;
        final DriverQueue driver;

        Rig(RingKind kind) {
            this.kind = kind;
            this.features = VirtioFeatures.bit(VirtioFeatures.VERSION_1)
                    | (kind == RingKind.PACKED ? VirtioFeatures.bit(VirtioFeatures.RING_PACKED) : 0);
            this.plan = RingPlacement.plan(kind, SIZE, 0, 0, SIZE * 64L);
            this.guest = SharedMemory.create("region-test-guest", plan.totalBytes());
            this.memory = guest.guestMemory(0);
            this.inflight = SharedMemory.create("region-test-inflight", InflightBuffer.size(kind, 2, SIZE));
            open.add(guest);
            open.add(inflight);
            this.driver = kind.driver("driver", memory, SIZE, plan.rings(), features, null);
        }

        InflightBuffer buffer() {
            return InflightBuffer.of(kind, inflight.segment(), 2, SIZE);
        }

        DeviceQueue device() {
            return kind.device("device", memory, SIZE, plan.rings(), features);
        }

        /** Offers {@code n} chains of one readable and one writable buffer; returns their ids. */
        int[] offer(int n) {
            int[] ids = new int[n];
            for (int i = 0; i < n; i++) {
                driver.addReadable(plan.dataGpa() + 64L * i, 16);
                driver.addWritable(plan.dataGpa() + 64L * i + 16, 16);
                ids[i] = driver.submit();
            }
            driver.publish();
            return ids;
        }

        /** Bytes of queue {@code q}'s region. */
        MemorySegment region(int q) {
            long stride = InflightBuffer.stride(kind, SIZE);
            return inflight.segment().asSlice(q * stride, stride);
        }

        byte[] snapshot() {
            return inflight.segment().toArray(JAVA_BYTE);
        }
    }

    private static InflightRegionException refusedAndBroken(DeviceQueue device, InflightBuffer buffer, int queue,
                                                            InflightRegionException.Kind kind) {
        InflightRegionException e = assertThrows(InflightRegionException.class, () -> device.trackInflight(buffer, queue));
        assertEquals(kind, e.kind(), e.getMessage());
        assertTrue(device.isBroken(), "a queue whose region is refused does not run");
        assertTrue(device.brokenReason().contains(e.getMessage()), device.brokenReason());
        assertNull(device.poll());
        return e;
    }

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void aBufferSmallerThanItsQueuesIsRefusedWhenMapped(RingKind kind) {
        Rig rig = new Rig(kind);
        MemorySegment small = rig.inflight.segment().asSlice(0, InflightBuffer.size(kind, 2, SIZE) - 1);
        InflightRegionException e = assertThrows(InflightRegionException.class, () -> InflightBuffer.of(kind, small, 2, SIZE));
        assertEquals(REGION_TOO_SMALL, e.kind(), e.getMessage());
    }

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void aGeometryThatCannotBeIsRefused(RingKind kind) {
        Rig rig = new Rig(kind);
        for (int[] bad : new int[][] {{0, SIZE}, {1, 0}, {1, 32769}, {70000, SIZE}}) {
            InflightRegionException e = assertThrows(InflightRegionException.class,
                    () -> InflightBuffer.of(kind, rig.inflight.segment(), bad[0], bad[1]));
            assertEquals(INVALID_GEOMETRY, e.kind(), e.getMessage());
        }
        if (kind == RingKind.SPLIT) {
            assertEquals(INVALID_GEOMETRY, assertThrows(InflightRegionException.class,
                    () -> InflightBuffer.size(kind, 1, 6)).kind(), "split sizes are powers of two");
        }
    }

    @Test
    void theSizesAreTheOnesQemuAndDpdkUse() {
        assertEquals(4160, InflightBuffer.stride(RingKind.SPLIT, 256));
        assertEquals(8256, InflightBuffer.stride(RingKind.PACKED, 256));
        assertEquals(2 * 2112, InflightBuffer.size(RingKind.SPLIT, 2, 128));
    }

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void aQueueBeyondTheBufferIsRefused(RingKind kind) {
        Rig rig = new Rig(kind);
        byte[] before = rig.snapshot();
        refusedAndBroken(rig.device(), rig.buffer(), 2, REGION_TOO_SMALL);
        assertArrayEquals(before, rig.snapshot(), "nothing written");
    }

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void anUnknownVersionIsRefusedAndNothingWritten(RingKind kind) {
        Rig rig = new Rig(kind);
        rig.region(1).set(LE_U16, SplitInflightLayout.VERSION, (short) 7);
        byte[] before = rig.snapshot();
        refusedAndBroken(rig.device(), rig.buffer(), 1, UNSUPPORTED_VERSION);
        assertArrayEquals(before, rig.snapshot(), "nothing written");
    }

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void aRegionOfAnotherQueueSizeIsRefused(RingKind kind) {
        Rig rig = new Rig(kind);
        DeviceQueue first = rig.device();
        first.trackInflight(rig.buffer(), 0);
        rig.region(0).set(LE_U16, SplitInflightLayout.DESC_NUM, (short) (SIZE / 2));
        refusedAndBroken(rig.device(), rig.buffer(), 0, QUEUE_SIZE_MISMATCH);

        InflightBuffer bigger = InflightBuffer.of(kind, rig.inflight.segment(), 1, SIZE / 2);
        refusedAndBroken(rig.device(), bigger, 0, QUEUE_SIZE_MISMATCH);
    }

    @Test
    void aSplitRegionFarBehindTheUsedRingIsRefused() {
        Rig rig = new Rig(RingKind.SPLIT);
        DeviceQueue device = rig.device();
        device.trackInflight(rig.buffer(), 0);
        for (int round = 0; round < 3; round++) {
            rig.offer(SIZE / 2); // two descriptors each: a full ring
            DescriptorChain c;
            while ((c = device.poll()) != null) {
                device.addUsed(c, 0);
            }
            device.publish();
            while (rig.driver.pollUsed() >= 0) {
                // collected
            }
        }
        assertEquals(3 * SIZE / 2, rig.region(0).get(LE_U16, SplitInflightLayout.USED_IDX), "the region follows the ring");
        rig.region(0).set(LE_U16, SplitInflightLayout.USED_IDX, (short) 0);
        refusedAndBroken(rig.device(), rig.buffer(), 0, CORRUPT);
    }

    @Test
    void aSplitRegionClaimingMoreInFlightThanTheDriverOfferedIsRefused() {
        Rig rig = new Rig(RingKind.SPLIT);
        SplitInflightQueue region = rig.buffer().splitQueue(0);
        region.recover(0);
        rig.offer(2);
        region.markInflight(0, 0);
        region.markInflight(1, 1);
        region.markInflight(5, 2);
        InflightRegionException e = refusedAndBroken(rig.device(), rig.buffer(), 0, RING_MISMATCH);
        assertTrue(e.getMessage().contains("3 heads in flight"), e.getMessage());
    }

    @Test
    void aPackedRegionBehindTheRingIsRefused() {
        Rig rig = new Rig(RingKind.PACKED);
        DeviceQueue device = rig.device();
        device.trackInflight(rig.buffer(), 0);
        rig.offer(3);
        DescriptorChain c;
        while ((c = device.poll()) != null) {
            device.addUsed(c, 0);
        }
        device.publish();
        // Rewind the region's used position to the start: the ring there already shows used.
        rig.region(0).set(ValueLayout.JAVA_LONG, PackedInflightLayout.USED_WORD, 1L << 32 | 1L << 40);
        refusedAndBroken(rig.device(), rig.buffer(), 0, RING_MISMATCH);
    }

    @Test
    void aPackedChainThatIsNoListOrHasAnIdOutOfRangeIsRefused() {
        Rig rig = new Rig(RingKind.PACKED);
        PackedInflightQueue region = rig.buffer().packedQueue(0);
        region.recover(slot -> 0, 0, 1);
        region.beginChain(0);
        region.addDescriptor(rig.plan.dataGpa(), 16, 2, PackedLayout.availableFlags(1), true);
        region.beginChain(1);
        region.addDescriptor(rig.plan.dataGpa(), 16, 3, PackedLayout.availableFlags(1) | PackedLayout.F_NEXT, true);
        rig.offer(2);
        assertTrue(refusedAndBroken(rig.device(), rig.buffer(), 0, CORRUPT).getMessage().contains("not a list"));

        Rig other = new Rig(RingKind.PACKED);
        PackedInflightQueue r2 = other.buffer().packedQueue(0);
        r2.recover(slot -> 0, 0, 1);
        r2.beginChain(0);
        r2.addDescriptor(other.plan.dataGpa(), 16, SIZE, PackedLayout.availableFlags(1), true);
        other.offer(1);
        assertTrue(refusedAndBroken(other.device(), other.buffer(), 0, CORRUPT).getMessage().contains("buffer id " + SIZE));
    }

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void aResubmittedChainIsValidatedLikeAnyOther(RingKind kind) {
        Rig rig = new Rig(kind);
        DeviceQueue device = rig.device();
        device.trackInflight(rig.buffer(), 0);
        rig.offer(1);
        assertNotNull(device.poll());
        // The back-end dies holding the chain; meanwhile its buffer is pointed outside guest memory
        // (split: in the descriptor table the driver owns; packed: in the region's own record).
        if (kind == RingKind.SPLIT) {
            rig.guest.segment().set(LE_U64, rig.plan.rings().descriptorArea() + SplitLayout.DESC_ADDR, 1L << 50);
        } else {
            rig.region(0).set(LE_U64, PackedInflightLayout.entry(0) + PackedInflightLayout.ENTRY_ADDR, 1L << 50);
        }
        DeviceQueue next = rig.device();
        assertEquals(1, next.trackInflight(rig.buffer(), 0));
        assertNull(next.poll(), "the chain is refused");
        assertTrue(next.isBroken());
        assertTrue(next.brokenReason().contains("outside guest memory"), next.brokenReason());
    }

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void trackingStartsBeforeTheFirstChainAndOnlyOnce(RingKind kind) {
        Rig rig = new Rig(kind);
        DeviceQueue device = rig.device();
        assertFalse(device.isTrackingInflight());
        rig.offer(1);
        assertNotNull(device.poll());
        assertThrows(IllegalStateException.class, () -> device.trackInflight(rig.buffer(), 0));
        assertFalse(device.isTrackingInflight());

        Rig idle = new Rig(kind);
        DeviceQueue fresh = idle.device();
        assertNull(fresh.poll(), "a poll that finds nothing changes nothing");
        assertEquals(0, fresh.trackInflight(idle.buffer(), 1));
        assertTrue(fresh.isTrackingInflight());
        assertThrows(IllegalStateException.class, () -> fresh.trackInflight(idle.buffer(), 1));

        RingKind other = kind == RingKind.SPLIT ? RingKind.PACKED : RingKind.SPLIT;
        MemorySegment segment = rig.inflight.segment().asSlice(0, InflightBuffer.size(other, 1, SIZE));
        assertThrows(IllegalArgumentException.class,
                () -> rig.device().trackInflight(InflightBuffer.of(other, segment, 1, SIZE), 0));
    }

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void aQueueBrokenAtCreationLeavesTheRegionAlone(RingKind kind) {
        Rig rig = new Rig(kind);
        RingAddresses bad = new RingAddresses(1L << 50, rig.plan.rings().driverArea(), rig.plan.rings().deviceArea());
        DeviceQueue device = kind.device("broken", rig.memory, SIZE, bad, rig.features);
        assertTrue(device.isBroken());
        byte[] before = rig.snapshot();
        assertEquals(0, device.trackInflight(rig.buffer(), 0));
        assertArrayEquals(before, rig.snapshot());
    }

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void aTrackedQueueRefusesToCompleteWhatIsNotInFlight(RingKind kind) {
        Rig rig = new Rig(kind);
        DeviceQueue device = rig.device();
        device.trackInflight(rig.buffer(), 0);
        rig.offer(1);
        DescriptorChain c = device.poll();
        int token = c.token();
        device.addUsed(token, 0);
        assertThrows(IllegalArgumentException.class, () -> device.addUsed(token, 0), "completed twice in one batch");
        device.publish();
        assertThrows(IllegalArgumentException.class, () -> device.addUsed(token, 0), "completed after its publish");
        int notPopped = kind == RingKind.SPLIT ? 5 : (1 << 16) | 5;
        assertThrows(IllegalArgumentException.class, () -> device.addUsed(notPopped, 0), "never popped");
        assertFalse(device.isBroken());
    }

    @Test
    void aSplitHeadOfferedAgainWhileTheDeviceOwnsItBreaksATrackedQueue() {
        Rig rig = new Rig(RingKind.SPLIT);
        DeviceQueue device = rig.device();
        device.trackInflight(rig.buffer(), 0);
        int[] ids = rig.offer(1);
        assertNotNull(device.poll());
        // A hostile driver puts the same head in the next avail slot and publishes it.
        MemorySegment avail = rig.guest.segment().asSlice(rig.plan.rings().driverArea(), SplitLayout.driverAreaSize(SIZE));
        avail.set(LE_U16, SplitLayout.AVAIL_RING + 2, (short) ids[0]);
        avail.set(LE_U16, SplitLayout.AVAIL_IDX, (short) 2);
        assertNull(device.poll());
        assertTrue(device.brokenReason().contains("still owns"), device.brokenReason());
    }

    /**
     * A packed publish stores the used descriptors of a batch, then the first one's flags. Killed in
     * between, the ring holds used descriptors past the first that the driver cannot see yet; the
     * region rolls the batch back and its chains are resubmitted. Those stale descriptors must never
     * surface, or the driver would see a chain completed twice.
     */
    @Test
    void aRolledBackPackedBatchNeverSurfacesToTheDriver() {
        long usedPositionStore = storeThatSetsTheUsedPosition();
        Rig rig = new Rig(RingKind.PACKED);
        DeviceQueue doomed = rig.device();
        doomed.trackInflight(InflightBuffer.of(RingKind.PACKED, rig.inflight.segment(), 2, SIZE,
                KillSwitch.at(KillSwitch.Side.AFTER, usedPositionStore)), 0);
        int[] ids = rig.offer(2);
        int a = doomed.poll().token();
        int b = doomed.poll().token();
        doomed.addUsed(a, 0);
        doomed.addUsed(b, 0);
        assertThrows(KillSwitch.Killed.class, doomed::publish, "killed right after the used position store");
        // The kill lets the plain store of the second used descriptor through, not the first's flags.
        MemorySegment ring = rig.guest.segment().asSlice(rig.plan.rings().descriptorArea(), PackedLayout.descriptorRingSize(SIZE));
        long second = PackedLayout.descriptorOffset(2); // each chain took two slots
        ring.set(LE_U16, second + PackedLayout.DESC_ID, (short) (b & 0xFFFF));
        ring.set(LE_U16, second + PackedLayout.DESC_FLAGS, (short) PackedLayout.usedFlags(1));
        assertEquals(-1, rig.driver.pollUsed(), "the batch is not visible: its first descriptor is not used");

        DeviceQueue next = rig.device();
        assertEquals(2, next.trackInflight(rig.buffer(), 0), "both chains are back in flight");
        DescriptorChain first = next.poll();
        assertEquals(ids[0], first.head(), "in pop order");
        next.addUsed(first, 0);
        next.publish();
        assertEquals(ids[0], rig.driver.pollUsed());
        assertEquals(-1, rig.driver.pollUsed(), "the stale used descriptor of the rolled-back batch is not seen");
        DescriptorChain then = next.poll();
        assertEquals(ids[1], then.head());
        next.addUsed(then, 0);
        next.publish();
        assertEquals(ids[1], rig.driver.pollUsed());
        assertEquals(-1, rig.driver.pollUsed());
        assertFalse(rig.driver.isBroken());
        assertFalse(next.isBroken());
    }

    /** The number (after-side, 1-based) of the store that sets the used position in a publish of two chains. */
    private long storeThatSetsTheUsedPosition() {
        Rig rig = new Rig(RingKind.PACKED);
        MemorySegment region = rig.region(0);
        long[] count = {0};
        long[] found = {-1};
        long[] lastWord = {0};
        StoreProbe probe = () -> {
            count[0]++;
            long word = region.get(ValueLayout.JAVA_LONG, PackedInflightLayout.USED_WORD);
            // used_idx (bits 0-15) moves, old_used_idx (bits 16-31) does not: step 2, not the commit.
            if (found[0] < 0 && (word & 0xFFFF) != (lastWord[0] & 0xFFFF)
                    && ((word >>> 16) & 0xFFFF) == ((lastWord[0] >>> 16) & 0xFFFF)) {
                found[0] = count[0];
            }
            lastWord[0] = word;
        };
        DeviceQueue device = rig.device();
        device.trackInflight(InflightBuffer.of(RingKind.PACKED, rig.inflight.segment(), 2, SIZE, probe), 0);
        lastWord[0] = region.get(ValueLayout.JAVA_LONG, PackedInflightLayout.USED_WORD);
        rig.offer(2);
        device.addUsed(device.poll().token(), 0);
        device.addUsed(device.poll().token(), 0);
        device.publish();
        assertTrue(found[0] > 0, "the publish stored a used position");
        return found[0];
    }
}
