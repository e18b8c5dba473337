package io.vring.engine.memory;

import io.vring.engine.os.Libc;
import io.vring.engine.os.NativeCallException;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;

import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SharedMemoryTest {

    @Test
    void aNewMemoryIsZeroedAndExactlyAsLargeAsAsked() {
        try (SharedMemory m = SharedMemory.create("zeroed", 3 * 4096)) {
            assertEquals(3 * 4096, m.size());
            assertEquals(3 * 4096, m.segment().byteSize());
            assertEquals(0L, m.segment().get(JAVA_LONG, 2 * 4096 + 8));
        }
    }

    @Test
    void aWriteIsVisibleThroughAMappingOpenedFromProcSelfFd() {
        try (SharedMemory m = SharedMemory.create("shared", 8192);
             SharedMemory other = SharedMemory.openPath(Path.of("/proc/self/fd/" + m.fd()), 8192)) {
            assertTrue(m.fd() != other.fd());
            m.segment().set(JAVA_LONG, 4096, 0x1122_3344_5566_7788L);
            assertEquals(0x1122_3344_5566_7788L, other.segment().get(JAVA_LONG, 4096));
            other.segment().set(JAVA_LONG, 0, 42);
            assertEquals(42, m.segment().get(JAVA_LONG, 0));
        }
    }

    @Test
    void openOfAnFdMapsTheSameFileAndTakesOwnershipOfTheFd() {
        try (SharedMemory m = SharedMemory.create("owner", 4096)) {
            int second = Libc.open(Path.of("/proc/self/fd/" + m.fd()), Libc.O_RDWR | Libc.O_CLOEXEC);
            SharedMemory adopted = SharedMemory.open(second, 4096);
            m.segment().set(JAVA_LONG, 8, 7);
            assertEquals(7, adopted.segment().get(JAVA_LONG, 8));
            adopted.close();
            assertFdClosed(second);
        }
    }

    @Test
    void openRefusesToMapPastTheEndOfTheFileAndClosesTheFd() {
        try (SharedMemory m = SharedMemory.create("short", 4096)) {
            int second = Libc.open(Path.of("/proc/self/fd/" + m.fd()), Libc.O_RDWR | Libc.O_CLOEXEC);
            assertThrows(IllegalArgumentException.class, () -> SharedMemory.open(second, 8192));
            assertFdClosed(second);
        }
    }

    @Test
    void closeIsIdempotentClosesTheFdAndKillsTheSegment() {
        SharedMemory m = SharedMemory.create("closing", 4096);
        int fd = m.fd();
        m.close();
        m.close();
        assertTrue(m.isClosed());
        assertFdClosed(fd);
        assertThrows(IllegalStateException.class, () -> m.segment().get(JAVA_LONG, 0));
    }

    @Test
    void allocateRespectsAlignmentAndPacksFromTheStart() {
        try (SharedMemory m = SharedMemory.create("alloc", 4096)) {
            assertEquals(0, m.allocate(3, 1));
            assertEquals(16, m.allocate(10, 16));
            assertEquals(26, m.allocate(1, 2));
            assertEquals(1024, m.allocate(1024, 1024));
            assertEquals(2048, m.allocated());
        }
    }

    @Test
    void allocateThrowsWhenTheMemoryIsFullAndKeepsWhatWasThere() {
        try (SharedMemory m = SharedMemory.create("full", 4096)) {
            m.allocate(4000, 8);
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> m.allocate(100, 8));
            assertTrue(e.getMessage().contains("full"), e.getMessage());
            assertEquals(4000, m.allocate(96, 8), "the failed request took nothing");
            assertThrows(IllegalStateException.class, () -> m.allocate(1, 1));
            assertEquals(4096, m.allocate(0, 1), "an empty allocation at the very end fits");
        }
    }

    @Test
    void allocateRejectsAnAlignmentThatIsNotAPowerOfTwo() {
        try (SharedMemory m = SharedMemory.create("align", 4096)) {
            assertThrows(IllegalArgumentException.class, () -> m.allocate(8, 12));
            assertThrows(IllegalArgumentException.class, () -> m.allocate(8, 0));
            assertThrows(IllegalArgumentException.class, () -> m.allocate(-1, 8));
        }
    }

    @Test
    void guestMemoryPresentsTheMappingAtTheGivenGuestPhysicalAddress() {
        try (SharedMemory m = SharedMemory.create("gpa", 8192)) {
            GuestMemory memory = m.guestMemory(0x10_0000);
            assertEquals(0, memory.regionOf(0x10_0000));
            assertEquals(-1, memory.regionOf(0x10_0000 + 8192));
            memory.slice(0x10_0000 + 4096, 8).set(JAVA_LONG, 0, 99);
            assertEquals(99, m.segment().get(JAVA_LONG, 4096));

            GuestRegion region = m.region(0x4000, 0x7f00_0000_0000L);
            assertEquals(0x7f00_0000_0000L, region.userAddress());
            assertEquals(0, region.mmapOffset());
            assertEquals(8192, region.size());
        }
    }

    private static void assertFdClosed(int fd) {
        NativeCallException e = assertThrows(NativeCallException.class, () -> Libc.fcntl(fd, Libc.F_GETFD, 0));
        assertEquals(Libc.EBADF, e.errno());
        assertFalse(e.getMessage().isEmpty());
    }

    @Test
    void openRangeMapsExactlyTheRangeAlsoAtAnOffsetThatIsNotPageAligned() {
        try (SharedMemory m = SharedMemory.create("ranged", 4 * 4096)) {
            m.segment().set(JAVA_LONG, 4096 + 24, 0x0102_0304_0506_0708L);
            int second = Libc.open(Path.of("/proc/self/fd/" + m.fd()), Libc.O_RDWR | Libc.O_CLOEXEC);
            try (SharedMemory range = SharedMemory.openRange(second, 4096 + 16, 8192)) {
                assertEquals(8192, range.segment().byteSize());
                assertEquals(0x0102_0304_0506_0708L, range.segment().get(JAVA_LONG, 8), "offset 4096 + 16 + 8 of the file");
                range.segment().set(JAVA_LONG, 0, 99);
                assertEquals(99, m.segment().get(JAVA_LONG, 4096 + 16), "the same pages");
            }
            assertFdClosed(second);
        }
    }

    @Test
    void openRangeRefusesARangePastTheEndOfTheFileAndClosesTheFd() {
        try (SharedMemory m = SharedMemory.create("short", 8192)) {
            int second = Libc.open(Path.of("/proc/self/fd/" + m.fd()), Libc.O_RDWR | Libc.O_CLOEXEC);
            assertThrows(IllegalArgumentException.class, () -> SharedMemory.openRange(second, 4097, 4096),
                    "touching the missing bytes would SIGBUS");
            assertFdClosed(second);
            int third = Libc.open(Path.of("/proc/self/fd/" + m.fd()), Libc.O_RDWR | Libc.O_CLOEXEC);
            assertThrows(IllegalArgumentException.class, () -> SharedMemory.openRange(third, Long.MAX_VALUE, 4096),
                    "offset + size overflows");
            assertFdClosed(third);
        }
    }
}
