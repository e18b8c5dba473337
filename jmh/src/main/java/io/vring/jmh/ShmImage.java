package io.vring.jmh;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.SplittableRandom;

/**
 * A raw disk image file in {@code /dev/shm} (tmpfs: the "disk" is page cache, so the blk benchmarks
 * measure the back-ends, not a drive), filled with pseudo-random bytes so that every block is
 * allocated and a read copies real data rather than tmpfs's zero page. Both blk back-ends of a run
 * get an image made the same way; it is deleted on {@link #close()}.
 */
public final class ShmImage implements AutoCloseable {
    private static final Path SHM = Path.of("/dev/shm");
    private static final int CHUNK = 1 << 20;

    private final Path path;
    private final long sizeBytes;

    private ShmImage(Path path, long sizeBytes) {
        this.path = path;
        this.sizeBytes = sizeBytes;
    }

    /** A new image of {@code sizeBytes} (a multiple of 1 MiB) in /dev/shm, or the temp folder if there is none. */
    public static ShmImage create(String name, long sizeBytes, long seed) {
        if (sizeBytes <= 0 || sizeBytes % CHUNK != 0) {
            throw new IllegalArgumentException("image size " + sizeBytes + " is not a positive multiple of 1 MiB");
        }
        try {
            Path dir = Files.isDirectory(SHM) && Files.isWritable(SHM) ? SHM : Path.of(System.getProperty("java.io.tmpdir"));
            Path path = Files.createTempFile(dir, "vring-bench-" + name + "-", ".img");
            path.toFile().deleteOnExit(); // an interrupted run leaves no image in RAM
            SplittableRandom random = new SplittableRandom(seed);
            ByteBuffer chunk = ByteBuffer.allocate(CHUNK);
            try (FileChannel file = FileChannel.open(path, StandardOpenOption.WRITE)) {
                for (long at = 0; at < sizeBytes; at += CHUNK) {
                    chunk.clear();
                    while (chunk.remaining() >= Long.BYTES) {
                        chunk.putLong(random.nextLong());
                    }
                    chunk.flip();
                    while (chunk.hasRemaining()) {
                        file.write(chunk, at + chunk.position());
                    }
                }
            }
            return new ShmImage(path, sizeBytes);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot create a " + sizeBytes + "-byte image: " + e.getMessage(), e);
        }
    }

    public Path path() {
        return path;
    }

    public long sizeBytes() {
        return sizeBytes;
    }

    /** Deletes the file. */
    @Override
    public void close() {
        try {
            Files.deleteIfExists(path);
        } catch (IOException e) {
            System.out.println("# vring: could not delete " + path + ": " + e);
        }
    }
}
