package io.vring.engine.os;

import io.vring.engine.memory.SharedMemory;
import io.vring.engine.notify.EventFd;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static org.junit.jupiter.api.Assertions.assertEquals;

class FdLeakTest {

    @Test
    void creatingAndClosingTenThousandEventFdsAndSharedMemoriesLeavesNoFdBehind() throws IOException {
        long before = openFds();
        for (int i = 0; i < 10_000; i++) {
            try (EventFd e = EventFd.create()) {
                e.signal();
            }
            try (SharedMemory m = SharedMemory.create("leak-check", 4096)) {
                m.segment().set(JAVA_BYTE, 0, (byte) 1);
            }
        }
        assertEquals(before, openFds());
    }

    @Test
    void failedOpensCloseTheFdTheyWereGiven() throws IOException {
        long before = openFds();
        for (int i = 0; i < 1_000; i++) {
            int fd = Libc.memfdCreate("too-small", Libc.MFD_CLOEXEC);
            try {
                SharedMemory.open(fd, 4096); // the file is empty: refused, and the fd is closed
            } catch (IllegalArgumentException expected) {
                // the point of the test
            }
        }
        assertEquals(before, openFds());
    }

    private static long openFds() throws IOException {
        try (Stream<Path> fds = Files.list(Path.of("/proc/self/fd"))) {
            return fds.count();
        }
    }
}
