package io.vring.engine.memory;

import io.vring.engine.os.Libc;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A file-backed shared mapping (normally a memfd): the guest memory a JVM front-end offers a device,
 * memory for tests, and memory two processes share through one fd.
 *
 * <p><b>Ownership.</b> A {@code SharedMemory} owns its fd and its mapping. {@link #close()} unmaps and
 * then closes the fd, exactly once; later calls do nothing. The mapping lives in a shared arena, so
 * once it is closed every access through {@link #segment()} (or a {@link GuestRegion} made from it)
 * throws {@link IllegalStateException} rather than touching unmapped memory. Close only after every
 * thread that uses the memory has stopped: {@code close()} throws {@link IllegalStateException}, and
 * changes nothing, while a downcall that was passed the segment is still running.
 *
 * <p><b>Allocation.</b> {@link #allocate} is a bump allocator over the mapping. It returns offsets
 * from the start of the mapping, which are guest-physical addresses when the memory is presented at
 * GPA 0 ({@code guestMemory(0)}); for another base, add that base. Nothing is ever freed but the whole.
 *
 * <p>Thread-safe: {@code allocate} and {@code close} are synchronized; the segment itself is shared
 * memory whose ordering is the user's business (the rings publish with release/acquire).
 */
public final class SharedMemory implements AutoCloseable {
    /** mmap's file offset granularity (x86_64 and the usual arm64 kernels; hugetlbfs fds need more). */
    private static final long PAGE_SIZE = 4096;

    private final int fd;
    private final long size;
    private final Arena arena;
    private final MemorySegment segment;
    private long next;
    private boolean closed;

    private SharedMemory(int fd, long size) {
        this(fd, 0, size);
    }

    /** Maps {@code [offset, offset + size)} of the file; mmap wants a page-aligned file offset, so the
     * mapping starts at the page below {@code offset} and the segment skips the difference. */
    private SharedMemory(int fd, long offset, long size) {
        this.fd = fd;
        this.size = size;
        this.arena = Arena.ofShared();
        long delta = offset % PAGE_SIZE;
        try {
            MemorySegment mapping = Libc.mmap(fd, size + delta, offset - delta, arena);
            this.segment = mapping.asSlice(delta, size);
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    /**
     * A new memfd (MFD_CLOEXEC) of {@code size} zeroed bytes, mapped read-write and shared.
     *
     * @param name shows in {@code /proc/<pid>/fd} as {@code /memfd:<name>}; for people, not for lookup
     */
    public static SharedMemory create(String name, long size) {
        requirePositive(size);
        int fd = Libc.memfdCreate(name, Libc.MFD_CLOEXEC);
        try {
            Libc.ftruncate(fd, size);
            return new SharedMemory(fd, size);
        } catch (RuntimeException e) {
            Libc.close(fd);
            throw e;
        }
    }

    /**
     * Maps the first {@code size} bytes of an existing fd (e.g. one received over a socket) and takes
     * ownership of the fd: {@link #close()} closes it, and so does a failure here.
     *
     * @throws IllegalArgumentException if the file is shorter than {@code size} (touching the bytes
     *                                  past its end would raise SIGBUS and kill the JVM)
     */
    public static SharedMemory open(int fd, long size) {
        try {
            requirePositive(size);
            long fileSize = fileSize(fd);
            if (fileSize < size) {
                throw new IllegalArgumentException("fd " + fd + " holds " + fileSize + " bytes, cannot map " + size);
            }
            return new SharedMemory(fd, size);
        } catch (RuntimeException e) {
            Libc.close(fd);
            throw e;
        }
    }

    /**
     * Maps bytes {@code [offset, offset + size)} of an existing fd (a vhost-user memory region: its
     * {@code mmap_offset} need not be page-aligned) and takes ownership of the fd as {@link #open}
     * does. {@link #segment()} is exactly those bytes.
     *
     * @throws IllegalArgumentException if the file ends before {@code offset + size} (touching the
     *                                  missing bytes would raise SIGBUS and kill the JVM)
     */
    public static SharedMemory openRange(int fd, long offset, long size) {
        try {
            requirePositive(size);
            if (offset < 0 || offset + size < offset) {
                throw new IllegalArgumentException("range at offset " + offset + " of " + size + " bytes overflows");
            }
            long fileSize = fileSize(fd);
            if (fileSize < offset + size) {
                throw new IllegalArgumentException("fd " + fd + " holds " + fileSize + " bytes, cannot map "
                        + size + " bytes at offset " + offset);
            }
            return new SharedMemory(fd, offset, size);
        } catch (RuntimeException e) {
            Libc.close(fd);
            throw e;
        }
    }

    /**
     * Opens {@code path} read-write and maps its first {@code size} bytes. With
     * {@code /proc/<pid>/fd/<n>} this maps another process's memfd without passing the fd over a socket
     * (the caller needs ptrace access to that process, as for any /proc/pid/fd reopen).
     */
    public static SharedMemory openPath(Path path, long size) {
        return open(Libc.open(path, Libc.O_RDWR | Libc.O_CLOEXEC), size);
    }

    /** The fd behind the mapping; owned by this object, valid until {@link #close()}. */
    public int fd() {
        return fd;
    }

    /** The whole mapping, exactly {@link #size()} bytes; dead (accesses throw) once closed. */
    public MemorySegment segment() {
        return segment;
    }

    /** Bytes mapped. */
    public long size() {
        return size;
    }

    /** This memory as one guest region at {@code guestPhysicalAddress}, front-end address equal to the GPA. */
    public GuestRegion region(long guestPhysicalAddress) {
        return region(guestPhysicalAddress, guestPhysicalAddress);
    }

    /** This memory as one guest region at {@code guestPhysicalAddress} that the front-end sees at {@code userAddress}. */
    public GuestRegion region(long guestPhysicalAddress, long userAddress) {
        return new GuestRegion(guestPhysicalAddress, size, userAddress, 0, segment);
    }

    /** A guest memory snapshot made of this one region at {@code guestPhysicalAddress}. */
    public GuestMemory guestMemory(long guestPhysicalAddress) {
        return GuestMemory.of(region(guestPhysicalAddress));
    }

    /**
     * Reserves {@code bytes} bytes aligned to {@code alignment} (a power of two) and returns their
     * offset from the start of the mapping (the GPA when presented at GPA 0). The bytes are as the file
     * holds them: zero for a fresh memfd.
     *
     * @throws IllegalStateException if fewer than {@code bytes} aligned bytes are left
     */
    public synchronized long allocate(long bytes, long alignment) {
        if (bytes < 0) {
            throw new IllegalArgumentException("cannot allocate " + bytes + " bytes");
        }
        if (alignment <= 0 || Long.bitCount(alignment) != 1) {
            throw new IllegalArgumentException("alignment must be a power of two, got " + alignment);
        }
        long start = (next + alignment - 1) & -alignment;
        if (start < next || start > size || bytes > size - start) {
            throw new IllegalStateException("shared memory of " + size + " bytes is full: " + bytes
                    + " bytes aligned to " + alignment + " do not fit after offset " + next);
        }
        next = start + bytes;
        return start;
    }

    /** Bytes handed out by {@link #allocate} so far, alignment padding included. */
    public synchronized long allocated() {
        return next;
    }

    /**
     * Unmaps the memory and closes the fd, once; later calls do nothing. The unmap comes first so a
     * failure to close the fd (which Linux has released anyway) cannot leave a live mapping behind.
     *
     * @throws IllegalStateException if a thread is still inside a downcall that uses the segment; then
     *                               nothing was released and close may be called again later
     */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        arena.close();
        closed = true;
        Libc.close(fd);
    }

    /** True once {@link #close()} has completed. */
    public synchronized boolean isClosed() {
        return closed;
    }

    @Override
    public String toString() {
        return "SharedMemory[fd=" + fd + ", size=" + size + (isClosed() ? ", closed]" : "]");
    }

    private static long fileSize(int fd) {
        // stat through the magic link sees the open file itself, even a memfd or a deleted file.
        try {
            return Files.size(Path.of("/proc/self/fd/" + fd));
        } catch (IOException e) {
            throw new UncheckedIOException("cannot stat fd " + fd, e);
        }
    }

    private static void requirePositive(long size) {
        if (size <= 0) {
            throw new IllegalArgumentException("shared memory size must be positive, got " + size);
        }
    }
}
