package io.vring.engine.os;

import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.nio.file.Path;

import static java.lang.foreign.ValueLayout.JAVA_INT;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class LibcTest {

    @Test
    void aWriteThroughOneMappingOfAMemfdIsVisibleThroughASecondMapping() {
        int fd = Libc.memfdCreate("libc-test", Libc.MFD_CLOEXEC);
        try (Arena first = Arena.ofShared(); Arena second = Arena.ofShared()) {
            Libc.ftruncate(fd, 8192);
            MemorySegment a = Libc.mmap(fd, 8192, 0, first);
            MemorySegment b = Libc.mmap(fd, 8192, 0, second);
            assertEquals(8192, a.byteSize());
            assertTrue(a.address() != b.address(), "two distinct mappings");
            a.set(JAVA_INT, 4096, 0xcafe_f00d);
            assertEquals(0xcafe_f00d, b.get(JAVA_INT, 4096));
        } finally {
            Libc.close(fd);
        }
    }

    @Test
    void killNineEndsAChildProcessAtOnce() throws Exception {
        Process child = new ProcessBuilder("sleep", "60").start();
        try {
            Libc.kill((int) child.pid(), Libc.SIGKILL);
            assertTrue(child.waitFor(10, java.util.concurrent.TimeUnit.SECONDS), "the child ended");
            assertEquals(128 + Libc.SIGKILL, child.exitValue(), "ended by signal 9");
            // A reaped pid names no process (pid reuse within this instant is not a concern for a test).
            NativeCallException e = assertThrows(NativeCallException.class, () -> Libc.kill((int) child.pid(), Libc.SIGKILL));
            assertEquals("kill", e.call());
            assertEquals(3, e.errno(), "ESRCH");
        } finally {
            child.destroyForcibly();
        }
    }

    @Test
    void preadAndPwriteMoveBytesAtAFileOffsetWithoutMovingThePosition() {
        int fd = Libc.memfdCreate("libc-pread", Libc.MFD_CLOEXEC);
        try (Arena arena = Arena.ofConfined()) {
            Libc.ftruncate(fd, 8192);
            MemorySegment out = arena.allocate(512);
            for (int i = 0; i < 512; i += 4) {
                out.set(JAVA_INT, i, 0x1000 + i);
            }
            assertEquals(512, Libc.pwrite(fd, out, 512, 4096));
            MemorySegment in = arena.allocate(1024);
            assertEquals(1024, Libc.pread(fd, in, 1024, 3584), "reads across the written block");
            assertEquals(0, in.get(JAVA_INT, 0), "bytes before the write read as zero");
            assertEquals(0x1000 + 8, in.get(JAVA_INT, 512 + 8));
            assertEquals(16, Libc.read(fd, in, 16), "the position stayed at 0: a plain read reads the file's start");
            assertEquals(512, Libc.pread(fd, in, 1024, 8192 - 512), "short at end of file");
            assertEquals(0, Libc.pread(fd, in, 16, 8192), "0 at end of file");
            Libc.fdatasync(fd);
        } finally {
            Libc.close(fd);
        }
    }

    @Test
    void pwriteOnAReadOnlyFdThrowsNamingPwriteAndEbadf() {
        int memfd = Libc.memfdCreate("libc-ro", Libc.MFD_CLOEXEC);
        int fd = Libc.open(Path.of("/proc/self/fd/" + memfd), Libc.O_RDONLY | Libc.O_CLOEXEC);
        try (Arena arena = Arena.ofConfined()) {
            NativeCallException e = assertThrows(NativeCallException.class, () -> Libc.pwrite(fd, arena.allocate(8), 8, 0));
            assertEquals("pwrite", e.call());
            assertEquals(Libc.EBADF, e.errno());
        } finally {
            Libc.close(fd);
            Libc.close(memfd);
        }
    }

    @Test
    void ftruncateOnABadFdThrowsNamingTheCallAndEbadf() {
        NativeCallException e = assertThrows(NativeCallException.class, () -> Libc.ftruncate(9999, 4096));
        assertEquals("ftruncate", e.call());
        assertEquals(Libc.EBADF, e.errno());
        assertEquals("EBADF", e.errnoName());
        assertEquals("ftruncate(fd=9999, size=4096) failed: errno 9 (EBADF)", e.getMessage());
    }

    @Test
    void mmapOfABadFdThrowsNamingMmap() {
        try (Arena arena = Arena.ofConfined()) {
            NativeCallException e = assertThrows(NativeCallException.class, () -> Libc.mmap(9999, 4096, 0, arena));
            assertEquals("mmap", e.call());
            assertEquals(Libc.EBADF, e.errno());
            assertTrue(e.getMessage().startsWith("mmap(fd=9999, size=4096"), e.getMessage());
        }
    }

    @Test
    void aMappingCannotBeTouchedOnceItsArenaIsClosed() {
        int fd = Libc.memfdCreate("libc-test", Libc.MFD_CLOEXEC);
        try {
            Libc.ftruncate(fd, 4096);
            Arena arena = Arena.ofShared();
            MemorySegment m = Libc.mmap(fd, 4096, 0, arena);
            m.set(JAVA_INT, 0, 1);
            arena.close();
            assertThrows(IllegalStateException.class, () -> m.get(JAVA_INT, 0));
        } finally {
            Libc.close(fd);
        }
    }

    @Test
    void eventfdWritesAddUpAndAReadResetsTheCounter() {
        int fd = Libc.eventfd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK);
        try {
            assertTrue(Libc.eventfdWrite(fd, 3));
            assertTrue(Libc.eventfdWrite(fd, 4));
            assertEquals(7, Libc.eventfdRead(fd));
            assertEquals(-1, Libc.eventfdRead(fd), "empty non-blocking eventfd reports EAGAIN as -1");
        } finally {
            Libc.close(fd);
        }
    }

    @Test
    void pollTimesOutWithZeroAndReportsPollinOnceReadable() {
        int fd = Libc.eventfd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK);
        try {
            assertEquals(0, Libc.poll(fd, Libc.POLLIN, 10));
            Libc.eventfdWrite(fd, 1);
            assertEquals(Libc.POLLIN, Libc.poll(fd, Libc.POLLIN, 0) & Libc.POLLIN);
            int[] revents = new int[2];
            int other = Libc.eventfd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK);
            try {
                assertEquals(1, Libc.poll(new int[] {other, fd}, Libc.POLLIN, 0, revents));
                assertEquals(0, revents[0]);
                assertEquals(Libc.POLLIN, revents[1] & Libc.POLLIN);
            } finally {
                Libc.close(other);
            }
        } finally {
            Libc.close(fd);
        }
    }

    @Test
    void pollOnAnFdThatIsNotOpenThrowsEbadf() {
        int fd = Libc.eventfd(0, Libc.EFD_CLOEXEC);
        Libc.close(fd);
        NativeCallException e = assertThrows(NativeCallException.class, () -> Libc.poll(fd, Libc.POLLIN, 0));
        assertEquals("poll", e.call());
        assertEquals(Libc.EBADF, e.errno());
    }

    @Test
    void readAndWriteMoveBytesThroughTwoOpenFilesOfOneMemfd() {
        int writer = Libc.memfdCreate("libc-rw", Libc.MFD_CLOEXEC);
        // Reopening through /proc gives a second open file with its own offset, starting at 0.
        int reader = Libc.open(Path.of("/proc/self/fd/" + writer), Libc.O_RDWR | Libc.O_CLOEXEC);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocateFrom("hello");
            assertEquals(6, Libc.write(writer, out, out.byteSize()));
            MemorySegment in = arena.allocate(16);
            assertEquals(6, Libc.read(reader, in, in.byteSize()));
            assertEquals("hello", in.getString(0));
            assertEquals(0, Libc.read(reader, in, in.byteSize()), "end of file");
        } finally {
            Libc.close(reader);
            Libc.close(writer);
        }
    }

    @Test
    void openOfAMissingPathThrowsEnoent() {
        NativeCallException e = assertThrows(NativeCallException.class,
                () -> Libc.open(Path.of("/nonexistent/vring"), Libc.O_RDONLY));
        assertEquals("open", e.call());
        assertEquals(Libc.ENOENT, e.errno());
    }

    @Test
    void closingAnFdTwiceThrowsEbadfTheSecondTime() {
        int fd = Libc.eventfd(0, Libc.EFD_CLOEXEC);
        Libc.close(fd);
        NativeCallException e = assertThrows(NativeCallException.class, () -> Libc.close(fd));
        assertEquals("close", e.call());
        assertEquals(Libc.EBADF, e.errno());
    }

    @Test
    void fcntlReportsTheFlagsAnFdWasCreatedWith() {
        int fd = Libc.eventfd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK);
        try {
            assertEquals(Libc.FD_CLOEXEC, Libc.fcntl(fd, Libc.F_GETFD, 0) & Libc.FD_CLOEXEC);
            assertEquals(Libc.O_NONBLOCK, Libc.fcntl(fd, Libc.F_GETFL, 0) & Libc.O_NONBLOCK);
        } finally {
            Libc.close(fd);
        }
    }

    @Test
    void getpidIsThisProcess() {
        assertEquals(ProcessHandle.current().pid(), Libc.getpid());
    }

    @Test
    void eventfdSignallingAndPollingAllocateNothingOnceCompiled() {
        var threads = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        long me = Thread.currentThread().threadId();
        int fd = Libc.eventfd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK);
        try {
            // Interpreted downcalls allocate; compiled ones must not. Rounds run until the JIT is done.
            long allocated = Long.MAX_VALUE;
            for (int round = 0; round < 30 && allocated > 0; round++) {
                long before = threads.getThreadAllocatedBytes(me);
                for (int i = 0; i < 10_000; i++) {
                    Libc.eventfdWrite(fd, 1);
                    Libc.poll(fd, Libc.POLLIN, 0);
                    Libc.eventfdRead(fd);
                }
                allocated = threads.getThreadAllocatedBytes(me) - before;
            }
            assertEquals(0, allocated, "bytes allocated by 30,000 calls in the last round");
        } finally {
            Libc.close(fd);
        }
    }

    @Test
    void errnoNamesCoverTheCommonValuesAndFallBackToTheNumber() {
        assertEquals("EAGAIN", NativeCallException.errnoName(Libc.EAGAIN));
        assertEquals("EINTR", NativeCallException.errnoName(Libc.EINTR));
        assertEquals("EINVAL", NativeCallException.errnoName(Libc.EINVAL));
        assertEquals("errno 4095", NativeCallException.errnoName(4095));
    }

    @Test
    void sendAndRecvMoveBytesAtAnOffsetAndSayWouldBlockWithMinusOne() {
        int[] pair = Libc.unixStreamSocketPair();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(64);
            MemorySegment in = arena.allocate(64);
            for (int i = 0; i < 64; i++) {
                out.set(java.lang.foreign.ValueLayout.JAVA_BYTE, i, (byte) i);
            }
            assertEquals(-1, Libc.recv(pair[1], in, 0, 64, Libc.MSG_DONTWAIT), "nothing there: -1, not an exception");
            assertEquals(10, Libc.send(pair[0], out, 20, 10, Libc.MSG_DONTWAIT));
            assertEquals(10, Libc.recv(pair[1], in, 5, 10, Libc.MSG_DONTWAIT | Libc.MSG_PEEK), "a peek leaves them");
            assertEquals(10, Libc.recv(pair[1], in, 5, 59, Libc.MSG_DONTWAIT));
            assertEquals(20, in.get(java.lang.foreign.ValueLayout.JAVA_BYTE, 5));
            assertEquals(29, in.get(java.lang.foreign.ValueLayout.JAVA_BYTE, 14));
            assertThrows(IndexOutOfBoundsException.class, () -> Libc.send(pair[0], out, 60, 10, 0));
            Libc.shutdown(pair[0], Libc.SHUT_WR);
            assertEquals(0, Libc.recv(pair[1], in, 0, 64, Libc.MSG_DONTWAIT), "end of file after the peer's SHUT_WR");
            Libc.close(pair[1]);
            // MSG_NOSIGNAL: a send to a closed peer is EPIPE, not a SIGPIPE that ends the JVM.
            NativeCallException e = assertThrows(NativeCallException.class, () -> Libc.send(pair[0], out, 0, 1, 0));
            assertEquals("send", e.call());
            assertEquals(Libc.EPIPE, e.errno());
        } finally {
            Libc.close(pair[0]);
        }
    }

    @Test
    void unixConnectNamesWhyItFailed(@org.junit.jupiter.api.io.TempDir Path dir) throws Exception {
        NativeCallException none = assertThrows(NativeCallException.class,
                () -> Libc.unixConnect(dir.resolve("nobody"), Libc.SOCK_SEQPACKET));
        assertEquals("connect", none.call());
        assertEquals(Libc.ENOENT, none.errno());
        try (java.nio.channels.ServerSocketChannel stream = java.nio.channels.ServerSocketChannel.open(
                java.net.StandardProtocolFamily.UNIX)) {
            stream.bind(java.net.UnixDomainSocketAddress.of(dir.resolve("stream")));
            NativeCallException wrongType = assertThrows(NativeCallException.class,
                    () -> Libc.unixConnect(dir.resolve("stream"), Libc.SOCK_SEQPACKET));
            assertEquals(Libc.EPROTOTYPE, wrongType.errno(), wrongType.getMessage());
            assertTrue(wrongType.getMessage().contains("EPROTOTYPE"), wrongType.getMessage());
        }
        assertThrows(IllegalArgumentException.class,
                () -> Libc.unixConnect(dir.resolve("x".repeat(120)), Libc.SOCK_SEQPACKET));
    }
}
