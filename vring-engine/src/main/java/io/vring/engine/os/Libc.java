package io.vring.engine.os;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;
import java.nio.file.Path;
import java.util.Objects;
import java.util.concurrent.TimeUnit;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

/**
 * The one place vring calls libc, through FFM downcalls into the C library the JVM already loaded.
 *
 * <p><b>errno.</b> Every handle is built with {@code Linker.Option.captureCallState("errno")}, so
 * errno is copied into a capture segment by the downcall stub itself, before the JVM can run code
 * that clobbers it. The capture segment (and the other small scratch buffers below) belong to the
 * calling thread and are allocated once per thread, so a steady-state call allocates nothing.
 *
 * <p><b>The eventfd data path.</b> A capturing downcall makes a slice of the capture segment on every
 * call ({@code SharedUtils.checkCaptureSegment}); C2 scalar-replaces it, but interpreted or C1 code
 * (a worker's rarely taken sleep path, or any path after a deoptimisation) allocates 40 bytes per
 * call. So {@link #eventfdWrite}, {@link #eventfdRead} and the single-fd {@link #poll} first call a
 * handle without errno capture, and only when that returns -1 repeat the call with capture to learn
 * why. Repeating is sound for these three: a failed write or read changed nothing, and poll is
 * idempotent (its timeout is recomputed from the deadline). A wake-up path never allocates at any tier.
 *
 * <p><b>Errors.</b> A failed call throws {@link NativeCallException} naming the call, its arguments and
 * errno, except where a caller must handle the condition on its data path: {@code EAGAIN} on a
 * non-blocking read or write is a return value, and {@code EINTR} is retried here (for {@code close}
 * it is not: Linux has already released the fd, and a retry could close a number another thread
 * has just been given).
 *
 * <p><b>Mappings.</b> {@link #mmap} ties each mapping to an {@link Arena}: closing the arena unmaps it,
 * exactly once, and the JDK first makes sure no thread is still accessing the segment (later accesses
 * throw {@link IllegalStateException} instead of faulting). There is deliberately no public munmap.
 *
 * <p>Constants are the Linux values shared by x86_64 and arm64 (the only targets vring runs on).
 */
public final class Libc {
    /** memfd_create: close the fd on exec. */
    public static final int MFD_CLOEXEC = 1;
    /** memfd_create: allow F_ADD_SEALS. */
    public static final int MFD_ALLOW_SEALING = 2;

    /** mmap protection: readable. */
    public static final int PROT_READ = 1;
    /** mmap protection: writable. */
    public static final int PROT_WRITE = 2;
    /** mmap: writes are shared with every other mapping of the file. */
    public static final int MAP_SHARED = 1;

    /** eventfd: semaphore semantics (each read takes 1). vring does not use it. */
    public static final int EFD_SEMAPHORE = 1;
    /** eventfd: non-blocking reads and writes. */
    public static final int EFD_NONBLOCK = 0x800;
    /** eventfd: close the fd on exec. */
    public static final int EFD_CLOEXEC = 0x80000;

    /** poll: readable. */
    public static final int POLLIN = 0x1;
    /** poll: writable. */
    public static final int POLLOUT = 0x4;
    /** poll: error condition (output only). */
    public static final int POLLERR = 0x8;
    /** poll: peer hung up (output only). */
    public static final int POLLHUP = 0x10;
    /** poll: the fd is not open (output only). */
    public static final int POLLNVAL = 0x20;

    /** open: read only. */
    public static final int O_RDONLY = 0;
    /** open: write only. */
    public static final int O_WRONLY = 1;
    /** open: read and write. */
    public static final int O_RDWR = 2;
    /** open / F_GETFL: non-blocking. */
    public static final int O_NONBLOCK = 0x800;
    /** open: close on exec. */
    public static final int O_CLOEXEC = 0x80000;

    /** fcntl: get fd flags (FD_CLOEXEC). */
    public static final int F_GETFD = 1;
    /** fcntl: set fd flags. */
    public static final int F_SETFD = 2;
    /** fcntl: get file status flags (O_NONBLOCK, access mode). */
    public static final int F_GETFL = 3;
    /** fcntl: set file status flags. */
    public static final int F_SETFL = 4;
    /** The close-on-exec fd flag. */
    public static final int FD_CLOEXEC = 1;

    /** Operation not permitted. */
    public static final int EPERM = 1;
    /** No such file or directory. */
    public static final int ENOENT = 2;
    /** Interrupted by a signal; retried inside this class. */
    public static final int EINTR = 4;
    /** Bad file descriptor. */
    public static final int EBADF = 9;
    /** Would block (non-blocking fd); EWOULDBLOCK is the same value on Linux. */
    public static final int EAGAIN = 11;
    /** Out of memory. */
    public static final int ENOMEM = 12;
    /** Permission denied. */
    public static final int EACCES = 13;
    /** Invalid argument. */
    public static final int EINVAL = 22;
    /** Too many open files in this process. */
    public static final int EMFILE = 24;
    /** Signal 9: ends a process at once, nothing runs after it (kill -9). */
    public static final int SIGKILL = 9;
    /** The peer closed its end (send without MSG_NOSIGNAL would also raise SIGPIPE). */
    public static final int EPIPE = 32;
    /** A message larger than the socket's send buffer can ever take. */
    public static final int EMSGSIZE = 90;
    /** The listener at the address is of another socket type. */
    public static final int EPROTOTYPE = 91;
    /** The peer reset the connection. */
    public static final int ECONNRESET = 104;
    /** Nobody listens at the address. */
    public static final int ECONNREFUSED = 111;

    /** socket: UNIX domain. */
    public static final int AF_UNIX = 1;
    /** socket: a connected, reliable socket that keeps record boundaries. */
    public static final int SOCK_SEQPACKET = 5;
    /** send/recv: do not block on this call, whatever the fd's mode. */
    public static final int MSG_DONTWAIT = 0x40;
    /** recv: return the record's real length even when the buffer took only part of it. */
    public static final int MSG_TRUNC = 0x20;
    /** recv: look at the next record without taking it. */
    public static final int MSG_PEEK = 0x2;
    /** send: a closed peer is EPIPE, not a SIGPIPE that ends the JVM. */
    public static final int MSG_NOSIGNAL = 0x4000;
    /** shutdown: no more sends (the peer reads end of file). */
    public static final int SHUT_WR = 1;
    /** poll: the peer shut down its writing half (input only, Linux). */
    public static final int POLLRDHUP = 0x2000;

    /** Bytes of one {@code struct pollfd} ({@code int fd; short events; short revents}) in a caller's array for {@link #poll(MemorySegment, int, int)}. */
    public static final long POLLFD_BYTES = 8;

    private static final Linker LINKER = Linker.nativeLinker();
    private static final SymbolLookup LIBC = LINKER.defaultLookup();
    private static final StructLayout CAPTURE_LAYOUT = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO = CAPTURE_LAYOUT.varHandle(MemoryLayout.PathElement.groupElement("errno"));

    private static final MethodHandle MEMFD_CREATE = downcall("memfd_create", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
    private static final MethodHandle FTRUNCATE = downcall("ftruncate", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG));
    private static final MethodHandle MMAP = downcall("mmap",
            FunctionDescriptor.of(ADDRESS, ADDRESS, JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_LONG));
    private static final MethodHandle MUNMAP = downcall("munmap", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG));
    private static final MethodHandle EVENTFD = downcall("eventfd", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT));
    private static final MethodHandle READ = downcall("read", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG));
    private static final MethodHandle WRITE = downcall("write", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG));
    private static final MethodHandle PREAD = downcall("pread", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG, JAVA_LONG));
    private static final MethodHandle PWRITE = downcall("pwrite", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG, JAVA_LONG));
    private static final MethodHandle FDATASYNC = downcall("fdatasync", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
    /** int poll(struct pollfd *fds, nfds_t nfds, int timeout); nfds_t is unsigned long. */
    private static final MethodHandle POLL = downcall("poll", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG, JAVA_INT));
    /* Without errno capture: the first try on the eventfd data path (see the class comment). */
    private static final MethodHandle READ_UNCAPTURED = uncapturedDowncall("read", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG));
    private static final MethodHandle WRITE_UNCAPTURED = uncapturedDowncall("write", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG));
    private static final MethodHandle POLL_UNCAPTURED = uncapturedDowncall("poll", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG, JAVA_INT));
    private static final MethodHandle CLOSE = downcall("close", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
    private static final MethodHandle GETPID = downcall("getpid", FunctionDescriptor.of(JAVA_INT));
    /** int kill(pid_t pid, int sig). */
    private static final MethodHandle KILL = downcall("kill", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT));
    /** int socketpair(int domain, int type, int protocol, int sv[2]). */
    private static final MethodHandle SOCKETPAIR = downcall("socketpair",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS));
    /** int pipe2(int pipefd[2], int flags). */
    private static final MethodHandle SOCKET = downcall("socket", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT));
    private static final MethodHandle CONNECT = downcall("connect", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT));
    private static final MethodHandle SHUTDOWN = downcall("shutdown", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT));
    // send and recv take the buffer as a raw address (a long): an offset into a segment without a slice object.
    private static final MethodHandle SEND = downcall("send", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_INT));
    private static final MethodHandle RECV = downcall("recv", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_INT));
    private static final MethodHandle SEND_UNCAPTURED = uncapturedDowncall("send", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_INT));
    private static final MethodHandle RECV_UNCAPTURED = uncapturedDowncall("recv", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_INT));
    private static final MethodHandle PIPE2 = downcall("pipe2", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
    /** open and fcntl are variadic: the third argument must be passed the variadic way (it sets %al on x86_64). */
    private static final MethodHandle OPEN = downcall("open", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT),
            Linker.Option.firstVariadicArg(2));
    private static final MethodHandle FCNTL = downcall("fcntl", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT),
            Linker.Option.firstVariadicArg(2));

    /** struct pollfd: int fd; short events; short revents. */
    private static final long POLLFD_SIZE = 8;
    private static final long POLLFD_FD = 0;
    private static final long POLLFD_EVENTS = 4;
    private static final long POLLFD_REVENTS = 6;

    /**
     * What one thread needs to make calls without allocating: the errno capture segment, the 8-byte
     * eventfd counter buffer and one struct pollfd. Allocated once per thread from an automatic arena,
     * so a finished thread's scratch is freed by the GC.
     */
    private static final class ThreadScratch {
        final MemorySegment capture;
        final MemorySegment counter;
        final MemorySegment pollFd;

        ThreadScratch() {
            Arena arena = Arena.ofAuto();
            capture = arena.allocate(CAPTURE_LAYOUT);
            counter = arena.allocate(JAVA_LONG);
            pollFd = arena.allocate(POLLFD_SIZE, 8);
        }

        int errno() {
            return (int) ERRNO.get(capture, 0L);
        }
    }

    private static final ThreadLocal<ThreadScratch> SCRATCH = ThreadLocal.withInitial(ThreadScratch::new);

    private Libc() {
    }

    /**
     * {@code memfd_create(name, flags)}: an anonymous file living in memory, of size 0.
     *
     * @return the new fd, owned by the caller
     */
    public static int memfdCreate(String name, int flags) {
        ThreadScratch s = SCRATCH.get();
        try (Arena arena = Arena.ofConfined()) {
            int fd = (int) MEMFD_CREATE.invokeExact(s.capture, arena.allocateFrom(name), flags);
            if (fd < 0) {
                throw failure(s, "memfd_create", "name=" + name + ", flags=0x" + Integer.toHexString(flags));
            }
            return fd;
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** {@code ftruncate(fd, size)}: sets the file's size; new bytes read as zero. EINTR is retried. */
    public static void ftruncate(int fd, long size) {
        ThreadScratch s = SCRATCH.get();
        try {
            while ((int) FTRUNCATE.invokeExact(s.capture, fd, size) != 0) {
                if (s.errno() != EINTR) {
                    throw failure(s, "ftruncate", "fd=" + fd + ", size=" + size);
                }
            }
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /**
     * {@code mmap(NULL, size, PROT_READ|PROT_WRITE, MAP_SHARED, fd, offset)}, owned by {@code owner}.
     *
     * <p>The result is exactly {@code size} bytes, in {@code owner}'s scope. Closing {@code owner} unmaps
     * it exactly once; the JDK closes a shared arena only when no thread is inside an access to it or
     * inside a downcall that was passed it (else {@code close()} throws and the mapping stays), so
     * our code can never touch an unmapped page through this segment. Use {@code Arena.ofShared()}
     * for a mapping several threads use.
     *
     * <p>Accessing bytes beyond the end of the file raises SIGBUS and kills the JVM: the caller checks
     * the file is at least {@code offset + size} bytes long. {@code offset} must be page-aligned.
     *
     * @throws NativeCallException if mmap returns MAP_FAILED
     */
    @SuppressWarnings("restricted") // reinterpret: this class is where vring vouches for a native size
    public static MemorySegment mmap(int fd, long size, long offset, Arena owner) {
        if (size <= 0) {
            throw new IllegalArgumentException("mmap size must be positive, got " + size);
        }
        ThreadScratch s = SCRATCH.get();
        MemorySegment mapped;
        try {
            mapped = (MemorySegment) MMAP.invokeExact(s.capture, MemorySegment.NULL, size, PROT_READ | PROT_WRITE,
                    MAP_SHARED, fd, offset);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        long address = mapped.address();
        if (address == -1L) { // MAP_FAILED
            throw failure(s, "mmap", "fd=" + fd + ", size=" + size + ", offset=" + offset);
        }
        try {
            // The cleanup captures address and size rather than the segment: it runs after the scope died.
            return mapped.reinterpret(size, owner, unused -> munmap(address, size));
        } catch (RuntimeException | Error e) {
            munmap(address, size); // owner already closed: the mapping would otherwise leak
            throw e;
        }
    }

    private static void munmap(long address, long size) {
        ThreadScratch s = SCRATCH.get();
        int r;
        try {
            r = (int) MUNMAP.invokeExact(s.capture, MemorySegment.ofAddress(address), size);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r != 0) {
            throw failure(s, "munmap", "address=0x" + Long.toHexString(address) + ", size=" + size);
        }
    }

    /** {@code eventfd(initval, flags)}: a new eventfd, owned by the caller. */
    public static int eventfd(int initialValue, int flags) {
        ThreadScratch s = SCRATCH.get();
        int fd;
        try {
            fd = (int) EVENTFD.invokeExact(s.capture, initialValue, flags);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (fd < 0) {
            throw failure(s, "eventfd", "initval=" + initialValue + ", flags=0x" + Integer.toHexString(flags));
        }
        return fd;
    }

    /**
     * Adds {@code value} to an eventfd's counter (an 8-byte write from a per-thread buffer: no
     * allocation). Returns false if the fd is non-blocking and the counter cannot take {@code value}
     * without overflowing ({@code EAGAIN}); the counter is then non-zero, so a reader is woken anyway.
     */
    public static boolean eventfdWrite(int fd, long value) {
        ThreadScratch s = SCRATCH.get();
        s.counter.set(JAVA_LONG, 0L, value);
        try {
            if ((long) WRITE_UNCAPTURED.invokeExact(fd, s.counter, 8L) == 8) {
                return true;
            }
            for (;;) { // it failed and changed nothing: again, with errno captured
                long n = (long) WRITE.invokeExact(s.capture, fd, s.counter, 8L);
                if (n == 8) {
                    return true;
                }
                if (n >= 0) {
                    throw new IllegalStateException("write(fd=" + fd + ") wrote " + n + " of an eventfd's 8 bytes");
                }
                int errno = s.errno();
                if (errno == EAGAIN) {
                    return false;
                }
                if (errno != EINTR) {
                    throw failure(s, "write", "fd=" + fd + ", eventfd value=" + value);
                }
            }
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /**
     * Reads an eventfd: returns its counter and resets it to 0 (8-byte read into a per-thread buffer:
     * no allocation). Returns -1 if the fd is non-blocking and the counter is 0 ({@code EAGAIN}); a
     * counter never holds 2^64-1, so -1 is not a value. Counters above 2^63-1 come back negative: read
     * them as unsigned. On a blocking eventfd with counter 0 this blocks until it is signalled.
     */
    public static long eventfdRead(int fd) {
        ThreadScratch s = SCRATCH.get();
        try {
            if ((long) READ_UNCAPTURED.invokeExact(fd, s.counter, 8L) == 8) {
                return s.counter.get(JAVA_LONG, 0L);
            }
            for (;;) { // it failed and read nothing: again, with errno captured
                long n = (long) READ.invokeExact(s.capture, fd, s.counter, 8L);
                if (n == 8) {
                    return s.counter.get(JAVA_LONG, 0L);
                }
                if (n >= 0) {
                    throw new IllegalStateException("read(fd=" + fd + ") gave " + n + " of an eventfd's 8 bytes");
                }
                int errno = s.errno();
                if (errno == EAGAIN) {
                    return -1;
                }
                if (errno != EINTR) {
                    throw failure(s, "read", "fd=" + fd + ", eventfd");
                }
            }
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /**
     * {@code read(fd, buf, len)} into a native segment of at least {@code len} bytes.
     *
     * @return bytes read, 0 at end of file, or -1 if the fd is non-blocking and nothing is ready
     *         ({@code EAGAIN}). EINTR is retried.
     */
    public static long read(int fd, MemorySegment buf, long len) {
        return transfer(READ, "read", fd, buf, len);
    }

    /**
     * {@code write(fd, buf, len)} from a native segment of at least {@code len} bytes.
     *
     * @return bytes written (possibly fewer than {@code len}), or -1 if the fd is non-blocking and
     *         cannot take any now ({@code EAGAIN}). EINTR is retried.
     */
    public static long write(int fd, MemorySegment buf, long len) {
        return transfer(WRITE, "write", fd, buf, len);
    }

    /**
     * {@code pread(fd, buf, len, fileOffset)} into a native segment of at least {@code len} bytes;
     * the file position does not move, so several threads may read one fd at once.
     *
     * @return bytes read (fewer than {@code len} only at end of file), 0 at or past end of file.
     *         EINTR is retried; every other error is thrown.
     */
    public static long pread(int fd, MemorySegment buf, long len, long fileOffset) {
        return positionalTransfer(PREAD, "pread", fd, buf, len, fileOffset);
    }

    /**
     * {@code pwrite(fd, buf, len, fileOffset)} from a native segment of at least {@code len} bytes;
     * the file position does not move, so several threads may write one fd at once.
     *
     * @return bytes written (possibly fewer than {@code len}). EINTR is retried; every other error is thrown.
     */
    public static long pwrite(int fd, MemorySegment buf, long len, long fileOffset) {
        return positionalTransfer(PWRITE, "pwrite", fd, buf, len, fileOffset);
    }

    /** {@code fdatasync(fd)}: the file's data (and the metadata needed to read it) reach the device. EINTR is retried. */
    public static void fdatasync(int fd) {
        ThreadScratch s = SCRATCH.get();
        try {
            while ((int) FDATASYNC.invokeExact(s.capture, fd) != 0) {
                if (s.errno() != EINTR) {
                    throw failure(s, "fdatasync", "fd=" + fd);
                }
            }
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** pread or pwrite through {@code call}: EINTR retried, every error (EAGAIN included) thrown. */
    private static long positionalTransfer(MethodHandle call, String name, int fd, MemorySegment buf, long len, long fileOffset) {
        Objects.checkFromIndexSize(0, len, buf.byteSize());
        if (fileOffset < 0) {
            throw new IllegalArgumentException(name + " at negative file offset " + fileOffset);
        }
        ThreadScratch s = SCRATCH.get();
        try {
            for (;;) {
                long n = (long) call.invokeExact(s.capture, fd, buf, len, fileOffset);
                if (n >= 0) {
                    return n;
                }
                if (s.errno() != EINTR) {
                    throw failure(s, name, "fd=" + fd + ", len=" + len + ", offset=" + fileOffset);
                }
            }
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** read or write through {@code call}: -1 on EAGAIN, EINTR retried, other errors thrown. */
    private static long transfer(MethodHandle call, String name, int fd, MemorySegment buf, long len) {
        Objects.checkFromIndexSize(0, len, buf.byteSize());
        ThreadScratch s = SCRATCH.get();
        try {
            for (;;) {
                long n = (long) call.invokeExact(s.capture, fd, buf, len);
                if (n >= 0) {
                    return n;
                }
                int errno = s.errno();
                if (errno == EAGAIN) {
                    return -1;
                }
                if (errno != EINTR) {
                    throw failure(s, name, "fd=" + fd + ", len=" + len);
                }
            }
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /**
     * Waits until {@code fd} has one of {@code events} (e.g. {@link #POLLIN}) or the timeout passes.
     * Uses a per-thread struct pollfd: no allocation. EINTR is retried with the time that is left.
     *
     * @param timeoutMillis 0 to check without waiting, negative to wait forever
     * @return the revents bits, 0 if the timeout passed
     * @throws NativeCallException with EBADF if the fd is not open (POLLNVAL)
     */
    public static int poll(int fd, int events, int timeoutMillis) {
        ThreadScratch s = SCRATCH.get();
        MemorySegment pfd = s.pollFd;
        pfd.set(JAVA_INT, POLLFD_FD, fd);
        pfd.set(JAVA_SHORT, POLLFD_EVENTS, (short) events);
        pfd.set(JAVA_SHORT, POLLFD_REVENTS, (short) 0);
        int ready = pollRetryingInterrupts(s, pfd, 1, timeoutMillis);
        if (ready < 0) {
            throw failure(s, "poll", "fd=" + fd + ", timeout=" + timeoutMillis);
        }
        if (ready == 0) {
            return 0;
        }
        int revents = Short.toUnsignedInt(pfd.get(JAVA_SHORT, POLLFD_REVENTS));
        if ((revents & POLLNVAL) != 0) {
            throw new NativeCallException("poll", "fd=" + fd + ", revents=POLLNVAL", EBADF);
        }
        return revents;
    }

    /**
     * Waits until one of {@code fds} has one of {@code events} or the timeout passes, and stores each
     * fd's revents bits in {@code revents}. Allocates a pollfd array: for control paths.
     *
     * @param timeoutMillis 0 to check without waiting, negative to wait forever
     * @return the number of fds with non-zero revents (POLLNVAL included), 0 if the timeout passed
     */
    public static int poll(int[] fds, int events, int timeoutMillis, int[] revents) {
        if (revents.length < fds.length) {
            throw new IllegalArgumentException("revents holds " + revents.length + " entries for " + fds.length + " fds");
        }
        ThreadScratch s = SCRATCH.get();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment pfds = arena.allocate(POLLFD_SIZE * Math.max(1, fds.length), 8);
            for (int i = 0; i < fds.length; i++) {
                pfds.set(JAVA_INT, i * POLLFD_SIZE + POLLFD_FD, fds[i]);
                pfds.set(JAVA_SHORT, i * POLLFD_SIZE + POLLFD_EVENTS, (short) events);
            }
            int ready = pollRetryingInterrupts(s, pfds, fds.length, timeoutMillis);
            if (ready < 0) {
                throw failure(s, "poll", "fds=" + fds.length + ", timeout=" + timeoutMillis);
            }
            for (int i = 0; i < fds.length; i++) {
                revents[i] = ready == 0 ? 0 : Short.toUnsignedInt(pfds.get(JAVA_SHORT, i * POLLFD_SIZE + POLLFD_REVENTS));
            }
            return ready;
        }
    }

    /** poll(2) with EINTR retried on the time left; -1 (errno in the scratch) on any other failure. */
    private static int pollRetryingInterrupts(ThreadScratch s, MemorySegment pfds, long count, int timeoutMillis) {
        long deadline = timeoutMillis > 0 ? System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMillis) : 0;
        int wait = timeoutMillis;
        try {
            int ready = (int) POLL_UNCAPTURED.invokeExact(pfds, count, wait);
            if (ready >= 0) {
                return ready;
            }
            for (;;) { // interrupted or failed: again with errno captured, on the time left
                if (timeoutMillis > 0) {
                    long leftNanos = deadline - System.nanoTime();
                    if (leftNanos <= 0) {
                        return 0;
                    }
                    // Round up: a 0 here would turn the rest of the wait into a busy check.
                    wait = (int) Math.max(1, TimeUnit.NANOSECONDS.toMillis(leftNanos + 999_999));
                }
                ready = (int) POLL.invokeExact(s.capture, pfds, count, wait);
                if (ready >= 0) {
                    return ready;
                }
                if (s.errno() != EINTR) {
                    return -1; // the caller names the arguments: building the message here would allocate per call
                }
            }
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /**
     * {@code close(fd)}. EINTR is not retried: Linux releases the fd before it can report EINTR, and
     * a retry might close an fd another thread has just opened with the same number.
     */
    public static void close(int fd) {
        ThreadScratch s = SCRATCH.get();
        int r;
        try {
            r = (int) CLOSE.invokeExact(s.capture, fd);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r != 0 && s.errno() != EINTR) {
            throw failure(s, "close", "fd=" + fd);
        }
    }

    /** {@code open(path, flags, 0)}: opens an existing file (no O_CREAT). EINTR is retried. */
    public static int open(Path path, int flags) {
        ThreadScratch s = SCRATCH.get();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment cPath = arena.allocateFrom(path.toString());
            for (;;) {
                int fd = (int) OPEN.invokeExact(s.capture, cPath, flags, 0);
                if (fd >= 0) {
                    return fd;
                }
                if (s.errno() != EINTR) {
                    throw failure(s, "open", "path=" + path + ", flags=0x" + Integer.toHexString(flags));
                }
            }
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** {@code fcntl(fd, cmd, arg)} for the int-argument commands (F_GETFD, F_GETFL, F_SETFL, ...). */
    public static int fcntl(int fd, int cmd, int arg) {
        ThreadScratch s = SCRATCH.get();
        int r;
        try {
            r = (int) FCNTL.invokeExact(s.capture, fd, cmd, arg);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r < 0) {
            throw failure(s, "fcntl", "fd=" + fd + ", cmd=" + cmd);
        }
        return r;
    }

    /**
     * {@code pipe2(fds, flags)}: a new pipe (e.g. the vhost-user DEVICE_STATE transfer channel).
     *
     * @param flags {@link #O_CLOEXEC} and/or {@link #O_NONBLOCK}, applied to both ends
     * @return {read end, write end}, both owned by the caller
     */
    public static int[] pipe2(int flags) {
        ThreadScratch s = SCRATCH.get();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment fds = arena.allocate(JAVA_INT, 2);
            if ((int) PIPE2.invokeExact(s.capture, fds, flags) != 0) {
                throw failure(s, "pipe2", "flags=0x" + Integer.toHexString(flags));
            }
            return new int[] {fds.getAtIndex(JAVA_INT, 0), fds.getAtIndex(JAVA_INT, 1)};
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /**
     * {@code socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)}: two connected UNIX stream
     * sockets (e.g. a vhost-user back-end channel, one end of which goes to the peer).
     *
     * @return both fds, owned by the caller
     */
    public static int[] unixStreamSocketPair() {
        final int afUnix = 1;
        final int sockStream = 1;
        final int sockCloexec = 0x80000;
        ThreadScratch s = SCRATCH.get();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment fds = arena.allocate(JAVA_INT, 2);
            if ((int) SOCKETPAIR.invokeExact(s.capture, afUnix, sockStream | sockCloexec, 0, fds) != 0) {
                throw failure(s, "socketpair", "AF_UNIX, SOCK_STREAM");
            }
            return new int[] {fds.getAtIndex(JAVA_INT, 0), fds.getAtIndex(JAVA_INT, 1)};
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /**
     * A non-blocking, close-on-exec {@code AF_UNIX} socket of {@code type} (e.g. {@link #SOCK_SEQPACKET})
     * connected to the socket file {@code path}. A UNIX connect finishes at once or fails: no listener
     * ({@code ECONNREFUSED} or {@code ENOENT}), a listener of another type ({@code EPROTOTYPE}), a full
     * listen backlog ({@code EAGAIN}). The socket is closed on failure.
     *
     * @return the connected fd, owned by the caller
     * @throws NativeCallException naming the call that failed and its errno
     */
    public static int unixConnect(Path path, int type) {
        final int sockNonblock = 0x800;
        final int sockCloexec = 0x80000;
        final long sunPathOffset = 2;
        final long sockaddrUnSize = 110;
        byte[] name = path.toString().getBytes(java.nio.charset.StandardCharsets.UTF_8);
        if (name.length >= sockaddrUnSize - sunPathOffset) {
            throw new IllegalArgumentException("socket path of " + name.length + " bytes does not fit sun_path: " + path);
        }
        ThreadScratch s = SCRATCH.get();
        int fd;
        try {
            fd = (int) SOCKET.invokeExact(s.capture, AF_UNIX, type | sockNonblock | sockCloexec, 0);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (fd < 0) {
            throw failure(s, "socket", "AF_UNIX, type=" + type);
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment address = arena.allocate(sockaddrUnSize, 2);
            address.set(JAVA_SHORT, 0, (short) AF_UNIX);
            MemorySegment.copy(name, 0, address, java.lang.foreign.ValueLayout.JAVA_BYTE, sunPathOffset, name.length);
            int r;
            do {
                r = (int) CONNECT.invokeExact(s.capture, fd, address, (int) (sunPathOffset + name.length + 1));
            } while (r != 0 && s.errno() == EINTR);
            if (r != 0) {
                NativeCallException failed = failure(s, "connect", "fd=" + fd + ", path=" + path);
                close(fd);
                throw failed;
            }
            return fd;
        } catch (NativeCallException e) {
            throw e;
        } catch (Throwable t) {
            close(fd);
            throw rethrow(t);
        }
    }

    /** {@code shutdown(fd, how)}, e.g. {@link #SHUT_WR}: the peer reads end of file after what was sent. */
    public static void shutdown(int fd, int how) {
        ThreadScratch s = SCRATCH.get();
        int r;
        try {
            r = (int) SHUTDOWN.invokeExact(s.capture, fd, how);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r != 0) {
            throw failure(s, "shutdown", "fd=" + fd + ", how=" + how);
        }
    }

    /**
     * {@code send(fd, buf + offset, len, flags | MSG_NOSIGNAL)} from a native segment: on a
     * SOCK_SEQPACKET socket one record, taken whole or not at all. Allocation-free at every tier
     * when it succeeds or would block: first tried without errno capture, then a -1 is checked with a
     * zero-timeout poll, and only a socket that is ready or failed is asked again with capture (a
     * failed send sent nothing).
     *
     * @return bytes sent, or -1 if the socket cannot take them now ({@code EAGAIN}). EINTR is retried;
     *         other errors (EPIPE, ECONNRESET, EMSGSIZE...) are thrown
     */
    public static long send(int fd, MemorySegment buf, long offset, long len, int flags) {
        Objects.checkFromIndexSize(offset, len, buf.byteSize());
        long address = nativeAddress(buf) + offset;
        int all = flags | MSG_NOSIGNAL;
        try {
            long n = (long) SEND_UNCAPTURED.invokeExact(fd, address, len, all);
            if (n >= 0) {
                return n;
            }
            ThreadScratch s = SCRATCH.get();
            if (notReady(s, fd, POLLOUT)) {
                return -1;
            }
            for (;;) {
                n = (long) SEND.invokeExact(s.capture, fd, address, len, all);
                if (n >= 0) {
                    return n;
                }
                int errno = s.errno();
                if (errno == EAGAIN) {
                    return -1;
                }
                if (errno != EINTR) {
                    throw failure(s, "send", "fd=" + fd + ", len=" + len);
                }
            }
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /**
     * {@code recv(fd, buf + offset, len, flags)} into a native segment: on a SOCK_SEQPACKET socket
     * the next record (with {@link #MSG_TRUNC} the return value is the record's full length, even if
     * only {@code len} bytes were stored). Allocation-free at every tier, as {@link #send}.
     *
     * @return bytes (0 at end of file, or for an empty record), or -1 if nothing is there now
     *         ({@code EAGAIN}). EINTR is retried; other errors (ECONNRESET...) are thrown
     */
    public static long recv(int fd, MemorySegment buf, long offset, long len, int flags) {
        Objects.checkFromIndexSize(offset, len, buf.byteSize());
        long address = nativeAddress(buf) + offset;
        try {
            long n = (long) RECV_UNCAPTURED.invokeExact(fd, address, len, flags);
            if (n >= 0) {
                return n;
            }
            ThreadScratch s = SCRATCH.get();
            if (notReady(s, fd, POLLIN)) {
                return -1;
            }
            for (;;) {
                n = (long) RECV.invokeExact(s.capture, fd, address, len, flags);
                if (n >= 0) {
                    return n;
                }
                int errno = s.errno();
                if (errno == EAGAIN) {
                    return -1;
                }
                if (errno != EINTR) {
                    throw failure(s, "recv", "fd=" + fd + ", len=" + len);
                }
            }
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /**
     * poll(2) over the caller's own array of {@code count} {@code struct pollfd} ({@link #POLLFD_BYTES}
     * each: le32 fd at 0, le16 events at 4, le16 revents at 6), filled and read by the caller: no
     * allocation, for a loop that polls many fds. EINTR is retried with the time left.
     *
     * @param timeoutMillis 0 to check without waiting, negative to wait forever
     * @return the number of entries with non-zero revents, 0 if the timeout passed
     */
    public static int poll(MemorySegment pollFds, int count, int timeoutMillis) {
        Objects.checkFromIndexSize(0, count * POLLFD_BYTES, pollFds.byteSize());
        ThreadScratch s = SCRATCH.get();
        int ready = pollRetryingInterrupts(s, pollFds, count, timeoutMillis);
        if (ready < 0) {
            throw failure(s, "poll", "fds=" + count + ", timeout=" + timeoutMillis);
        }
        return ready;
    }

    /**
     * After an uncaptured send or recv gave -1: whether the socket is simply not ready (EAGAIN), told
     * by a zero-timeout uncaptured poll showing no event at all (no readiness, error or hang-up). This
     * keeps the common EAGAIN off the capturing path, which allocates below C2 and is seldom hot enough
     * to reach it. If the socket became ready in between, or failed, the caller asks errno as usual.
     */
    private static boolean notReady(ThreadScratch s, int fd, int events) throws Throwable {
        MemorySegment pfd = s.pollFd;
        pfd.set(JAVA_INT, POLLFD_FD, fd);
        pfd.set(JAVA_SHORT, POLLFD_EVENTS, (short) events);
        pfd.set(JAVA_SHORT, POLLFD_REVENTS, (short) 0);
        return (int) POLL_UNCAPTURED.invokeExact(pfd, 1L, 0) == 0;
    }

    private static long nativeAddress(MemorySegment buf) {
        if (!buf.isNative()) {
            throw new IllegalArgumentException("send and recv need a native segment");
        }
        return buf.address();
    }

    /**
     * {@code kill(pid, sig)}: sends a signal, e.g. {@link #SIGKILL} to a back-end in a crash test (or to
     * ourselves: SIGKILL to our own pid does not return).
     *
     * @throws NativeCallException ESRCH if no such process, EPERM if not allowed
     */
    public static void kill(int pid, int sig) {
        ThreadScratch s = SCRATCH.get();
        int r;
        try {
            r = (int) KILL.invokeExact(s.capture, pid, sig);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r != 0) {
            throw failure(s, "kill", "pid=" + pid + ", sig=" + sig);
        }
    }

    /** {@code getpid()}: this process's id; cannot fail. */
    public static int getpid() {
        try {
            return (int) GETPID.invokeExact(SCRATCH.get().capture);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    @SuppressWarnings("restricted") // downcallHandle: this class is the one place vring binds native code
    private static MethodHandle downcall(String name, FunctionDescriptor descriptor, Linker.Option... extra) {
        MemorySegment symbol = LIBC.find(name)
                .orElseThrow(() -> new UnsatisfiedLinkError("the C library has no " + name + " (vring needs Linux glibc or musl)"));
        Linker.Option[] options = new Linker.Option[extra.length + 1];
        options[0] = Linker.Option.captureCallState("errno");
        System.arraycopy(extra, 0, options, 1, extra.length);
        return LINKER.downcallHandle(symbol, descriptor, options);
    }

    /** A downcall without errno capture: only for a first try that is repeated with capture when it fails. */
    @SuppressWarnings("restricted")
    private static MethodHandle uncapturedDowncall(String name, FunctionDescriptor descriptor) {
        MemorySegment symbol = LIBC.find(name)
                .orElseThrow(() -> new UnsatisfiedLinkError("the C library has no " + name + " (vring needs Linux glibc or musl)"));
        return LINKER.downcallHandle(symbol, descriptor);
    }

    private static NativeCallException failure(ThreadScratch s, String call, String arguments) {
        return new NativeCallException(call, arguments, s.errno());
    }

    /** Downcalls throw nothing checked; invokeExact only declares Throwable. */
    private static RuntimeException rethrow(Throwable t) {
        if (t instanceof RuntimeException e) {
            throw e;
        }
        if (t instanceof Error e) {
            throw e;
        }
        throw new IllegalStateException("downcall threw " + t, t);
    }
}
