package io.vring.backends.blk;

import io.vring.engine.os.Libc;

import java.io.EOFException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A disk image file, read and written in place with {@code pread}/{@code pwrite} straight between
 * the file and guest memory (no bounce buffer), and made durable with {@code fdatasync}.
 * Positional calls share no file position, so every I/O thread uses the one fd.
 */
final class FileImage implements DiskImage {
    /** Source of zeroes for WRITE_ZEROES: written again and again, never changed. */
    private static final long ZERO_CHUNK = 64 << 10;

    private final Path path;
    private final int fd;
    private final long sizeBytes;
    private final boolean readOnly;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment zeroes;
    private boolean closed;

    private FileImage(Path path, int fd, long sizeBytes, boolean readOnly) {
        this.path = path;
        this.fd = fd;
        this.sizeBytes = sizeBytes;
        this.readOnly = readOnly;
        this.zeroes = arena.allocate(ZERO_CHUNK, 4096);
    }

    static FileImage open(Path path, boolean readOnly) throws IOException {
        if (!Files.isRegularFile(path)) {
            throw new IOException(path + " is not a regular file (create it first, e.g. truncate -s 1G " + path + ")");
        }
        long size = Files.size(path);
        if (size < BlkLayout.SECTOR_SIZE) {
            throw new IOException(path + " holds " + size + " bytes, less than one 512-byte sector");
        }
        int fd = Libc.open(path, (readOnly ? Libc.O_RDONLY : Libc.O_RDWR) | Libc.O_CLOEXEC);
        return new FileImage(path, fd, size, readOnly);
    }

    @Override
    public long sizeBytes() {
        return sizeBytes;
    }

    @Override
    public boolean isReadOnly() {
        return readOnly;
    }

    @Override
    public void read(long offset, MemorySegment dst, long dstOffset, int length) {
        long done = 0;
        while (done < length) {
            long n = Libc.pread(fd, dst.asSlice(dstOffset + done, length - done), length - done, offset + done);
            if (n == 0) {
                // The file shrank under us: the guest gets an I/O error, not stale bytes.
                throw new UncheckedIOException(new EOFException(path + " ends before byte " + (offset + length)));
            }
            done += n;
        }
    }

    @Override
    public void write(long offset, MemorySegment src, long srcOffset, int length) {
        long done = 0;
        while (done < length) {
            done += Libc.pwrite(fd, src.asSlice(srcOffset + done, length - done), length - done, offset + done);
        }
    }

    @Override
    public void writeZeroes(long offset, long length) {
        long done = 0;
        while (done < length) {
            long run = Math.min(ZERO_CHUNK, length - done);
            done += Libc.pwrite(fd, zeroes, run, offset + done);
        }
    }

    @Override
    public void flush() {
        Libc.fdatasync(fd);
    }

    @Override
    public String describe() {
        return path + " (" + sizeBytes + " bytes" + (readOnly ? ", read-only" : "") + ")";
    }

    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        Libc.close(fd);
        arena.close();
    }
}
