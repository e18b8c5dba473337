package io.vring.backends.blk;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;

/**
 * The bytes behind a block device. Offsets and lengths are in bytes and already checked against
 * {@link #sizeBytes()} by the device. Called from the device's I/O threads, several at once:
 * implementations are thread-safe and allocate nothing per call on their success path. A failure
 * throws (an errno-carrying {@code NativeCallException}, an {@link java.io.UncheckedIOException})
 * and becomes the request's IOERR status.
 */
public interface DiskImage extends AutoCloseable {

    /** The image's size in bytes; the device exposes {@code sizeBytes() / 512} sectors. */
    long sizeBytes();

    /** True if writes must be refused (the device then offers VIRTIO_BLK_F_RO). */
    boolean isReadOnly();

    /** Copies {@code length} bytes at image offset {@code offset} into {@code dst[dstOffset, dstOffset + length)}. */
    void read(long offset, MemorySegment dst, long dstOffset, int length);

    /** Copies {@code src[srcOffset, srcOffset + length)} to image offset {@code offset}. */
    void write(long offset, MemorySegment src, long srcOffset, int length);

    /** Makes {@code [offset, offset + length)} read as zeroes. */
    void writeZeroes(long offset, long length);

    /** Makes every completed write durable (FLUSH; and after each write in writethrough mode). */
    void flush();

    /** For logs and the command line: what the image is. */
    String describe();

    @Override
    void close();

    /** An image file opened in place (it must exist; its size is the disk's size). */
    static DiskImage file(Path path, boolean readOnly) throws IOException {
        return FileImage.open(path, readOnly);
    }

    /**
     * A zeroed image of {@code sizeBytes} in memory (a memfd: pages are only taken when written);
     * {@code readOnly} gives a disk of zeroes that refuses writes.
     */
    static DiskImage ram(long sizeBytes, boolean readOnly) {
        return RamImage.create(sizeBytes, readOnly);
    }
}
