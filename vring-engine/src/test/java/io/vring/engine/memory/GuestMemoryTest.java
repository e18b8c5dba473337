package io.vring.engine.memory;

import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import static java.lang.foreign.ValueLayout.JAVA_INT;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class GuestMemoryTest {
    private static final long PAGE = 4096;

    /** Regions at [0, 4K) and [4K, 12K) (adjacent), a hole at [12K, 16K), then [16K, 20K). */
    private final GuestRegion low = region(0, PAGE, 0x7000_0000L);
    private final GuestRegion middle = region(PAGE, 2 * PAGE, 0x9000_0000L);
    private final GuestRegion high = region(4 * PAGE, PAGE, 0x7000_1000L);
    private final GuestMemory memory = GuestMemory.of(high, low, middle);

    @Test
    void regionsAreKeptInGuestPhysicalOrder() {
        assertEquals(3, memory.regionCount());
        assertEquals(0, memory.guestPhysicalStart(0));
        assertEquals(PAGE, memory.guestPhysicalStart(1));
        assertEquals(4 * PAGE, memory.guestPhysicalStart(2));
    }

    @Test
    void regionOfFindsTheRegionHoldingAnAddressAndMinusOneInAHole() {
        assertEquals(0, memory.regionOf(0));
        assertEquals(0, memory.regionOf(PAGE - 1));
        assertEquals(1, memory.regionOf(PAGE));
        assertEquals(1, memory.regionOf(3 * PAGE - 1));
        assertEquals(-1, memory.regionOf(3 * PAGE));
        assertEquals(2, memory.regionOf(4 * PAGE + 100));
        assertEquals(-1, memory.regionOf(5 * PAGE));
        assertEquals(-1, memory.regionOf(-1L));
    }

    @Test
    void aSliceWithinOneRegionAddressesItsBytes() {
        memory.slice(PAGE + 16, 4).set(JAVA_INT, 0, 0x5a5a);
        assertEquals(0x5a5a, middle.segment().get(JAVA_INT, 16));
    }

    @Test
    void aSliceThatRunsIntoAHoleThrows() {
        assertThrows(GuestMemoryException.class, () -> memory.slice(3 * PAGE - 8, 16));
        assertThrows(GuestMemoryException.class, () -> memory.slice(3 * PAGE, 1));
    }

    @Test
    void aSliceSpanningTwoAdjacentRegionsThrowsBecauseItIsNotOneSegment() {
        assertThrows(GuestMemoryException.class, () -> memory.slice(PAGE - 8, 16));
    }

    @Test
    void isBackedAcrossTwoAdjacentRegionsButNotAcrossAHole() {
        assertTrue(memory.isBacked(PAGE - 8, 16));
        assertTrue(memory.isBacked(0, 3 * PAGE));
        assertFalse(memory.isBacked(3 * PAGE - 8, 16));
        assertFalse(memory.isBacked(0, 5 * PAGE));
        assertTrue(memory.isBacked(4 * PAGE, PAGE));
        assertFalse(memory.isBacked(4 * PAGE, PAGE + 1));
    }

    @Test
    void userAddressesTranslateToGuestPhysicalOnesRegionByRegion() {
        assertEquals(0x10, memory.userToGuestPhysical(0x7000_0010L));
        assertEquals(PAGE + 0x20, memory.userToGuestPhysical(0x9000_0020L));
        assertEquals(4 * PAGE + PAGE - 1, memory.userToGuestPhysical(0x7000_1000L + PAGE - 1));
        assertThrows(GuestMemoryException.class, () -> memory.userToGuestPhysical(0x9000_0000L + 2 * PAGE));
    }

    @Test
    void overlappingRegionsAreRejected() {
        GuestRegion overlapping = region(2 * PAGE, 2 * PAGE, 0);
        assertThrows(IllegalArgumentException.class, () -> GuestMemory.of(low, middle, overlapping));
        assertThrows(IllegalArgumentException.class, () -> memory.withRegion(overlapping));
        assertThrows(IllegalArgumentException.class, () -> GuestMemory.of(low, low));
    }

    @Test
    void addingARegionFillsTheHoleWithoutChangingTheOldSnapshot() {
        GuestMemory filled = memory.withRegion(region(3 * PAGE, PAGE, 0x8000_0000L));
        assertTrue(filled.isBacked(0, 5 * PAGE));
        assertFalse(memory.isBacked(0, 5 * PAGE));
    }

    @Test
    void removingARegionOpensAHoleAndAnUnknownRegionIsRefused() {
        GuestMemory without = memory.withoutRegion(PAGE, 2 * PAGE);
        assertEquals(-1, without.regionOf(PAGE));
        assertThrows(GuestMemoryException.class, () -> memory.withoutRegion(PAGE, PAGE));
    }

    @Test
    void aRegionMustBeBackedByASegmentOfItsOwnSize() {
        MemorySegment small = Arena.ofAuto().allocate(PAGE);
        assertThrows(IllegalArgumentException.class, () -> new GuestRegion(0, 2 * PAGE, 0, 0, small));
    }

    private static GuestRegion region(long gpa, long size, long userAddress) {
        return new GuestRegion(gpa, size, userAddress, 0, Arena.ofAuto().allocate(size, 8));
    }
}
