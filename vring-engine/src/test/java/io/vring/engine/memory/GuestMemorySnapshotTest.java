package io.vring.engine.memory;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;

import static org.junit.jupiter.api.Assertions.*;

/** Translating guest-physical addresses: regions, GPA-adjacent regions, holes, the top of the space. */
class GuestMemorySnapshotTest {
    private Arena arena;
    private GuestRegion a;
    private GuestRegion b;
    private GuestRegion c;
    private GuestMemory memory;

    @BeforeEach
    void setUp() {
        arena = Arena.ofShared();
        a = region(0x10000, 0x1000);
        b = region(0x11000, 0x1000); // GPA-adjacent to a
        c = region(0x20000, 0x1000); // after a hole
        memory = GuestMemory.of(c, a, b);
    }

    @AfterEach
    void tearDown() {
        arena.close();
    }

    private GuestRegion region(long gpa, long size) {
        return new GuestRegion(gpa, size, gpa, 0, arena.allocate(size, 4096));
    }

    @Test
    void regionsAreKeptInAscendingGuestPhysicalOrder() {
        assertEquals(java.util.List.of(a, b, c), memory.regions());
    }

    @Test
    void everyAddressInsideARegionResolvesToThatRegion() {
        assertEquals(0, memory.regionOf(0x10000));
        assertEquals(0, memory.regionOf(0x10FFF));
        assertEquals(1, memory.regionOf(0x11000));
        assertEquals(2, memory.regionOf(0x20FFF));
    }

    @Test
    void addressesBeforeBetweenAndAfterRegionsResolveToNothing() {
        assertEquals(-1, memory.regionOf(0x0FFFF));
        assertEquals(-1, memory.regionOf(0x12000));
        assertEquals(-1, memory.regionOf(0x21000));
        assertEquals(-1, memory.regionOf(-1L));
    }

    @Test
    void aRangeOverGpaAdjacentRegionsIsBackedButOneIntoAHoleIsNot() {
        assertTrue(memory.isBacked(0x10F00, 0x200));
        assertTrue(memory.isBacked(0x10000, 0x2000));
        assertFalse(memory.isBacked(0x11F00, 0x200));
        assertFalse(memory.isBacked(0x12000, 1));
    }

    @Test
    void aSliceMustLieInOneRegion() {
        assertEquals(0x100, memory.slice(0x10F00, 0x100).byteSize());
        GuestMemoryException e = assertThrows(GuestMemoryException.class, () -> memory.slice(0x10F00, 0x200));
        assertTrue(e.getMessage().contains("0x10f00"), e.getMessage());
        assertThrows(GuestMemoryException.class, () -> memory.slice(0x12000, 1));
        assertThrows(GuestMemoryException.class, () -> memory.slice(0x10000, -1));
    }

    @Test
    void overlappingRegionsAreRejected() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> memory.withRegion(region(0x10800, 0x1000)));
        assertTrue(e.getMessage().contains("overlap"), e.getMessage());
    }

    @Test
    void aRegionCanBeAddedAndRemovedAsANewSnapshot() {
        GuestMemory more = memory.withRegion(region(0x30000, 0x1000));
        assertEquals(4, more.regionCount());
        assertEquals(3, memory.regionCount(), "the old snapshot is unchanged");
        assertEquals(3, more.withoutRegion(0x30000, 0x1000).regionCount());
        assertThrows(GuestMemoryException.class, () -> memory.withoutRegion(0x30000, 0x1000));
    }

    @Test
    void frontEndAddressesTranslateThroughTheRegionsUserAddress() {
        GuestRegion mapped = new GuestRegion(0x40000, 0x1000, 0x7F00_0000_0000L, 0, arena.allocate(0x1000, 4096));
        GuestMemory m = GuestMemory.of(mapped);
        assertEquals(0x40010, m.userToGuestPhysical(0x7F00_0000_0010L));
        assertThrows(GuestMemoryException.class, () -> m.userToGuestPhysical(0x7F00_0000_1000L));
    }
}
