package io.vring.backends.blk;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A real RAM disk whose reads and writes at or past {@code gatedFrom} wait until the test opens the
 * gate: it makes "the disk is slow for this request" happen when the test says, not by luck.
 * Counts the requests that arrived at the gate and the flushes.
 */
final class GatedImage implements DiskImage {
    private final RamImage disk;
    private final long gatedFrom;
    private final CountDownLatch gate = new CountDownLatch(1);
    final AtomicInteger waiting = new AtomicInteger();
    final AtomicInteger flushes = new AtomicInteger();

    GatedImage(long sizeBytes, long gatedFrom) {
        this.disk = RamImage.create(sizeBytes, false);
        this.gatedFrom = gatedFrom;
    }

    void open() {
        gate.countDown();
    }

    /** Waits until {@code n} requests are held at the gate. */
    void awaitWaiting(int n, long timeoutMillis) throws InterruptedException {
        long deadline = System.currentTimeMillis() + timeoutMillis;
        while (waiting.get() < n) {
            if (System.currentTimeMillis() > deadline) {
                throw new AssertionError(waiting.get() + " of " + n + " requests reached the disk within " + timeoutMillis + " ms");
            }
            Thread.sleep(2);
        }
    }

    private void pass(long offset) {
        if (offset < gatedFrom) {
            return;
        }
        waiting.incrementAndGet();
        try {
            if (!gate.await(20, TimeUnit.SECONDS)) {
                throw new IllegalStateException("the test never opened the gate");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }

    /** The disk's byte at {@code offset}, bypassing the gate. */
    byte byteAt(long offset) {
        MemorySegment one = MemorySegment.ofArray(new byte[1]);
        disk.read(offset, one, 0, 1);
        return one.get(java.lang.foreign.ValueLayout.JAVA_BYTE, 0);
    }

    @Override
    public long sizeBytes() {
        return disk.sizeBytes();
    }

    @Override
    public boolean isReadOnly() {
        return false;
    }

    @Override
    public void read(long offset, MemorySegment dst, long dstOffset, int length) {
        pass(offset);
        disk.read(offset, dst, dstOffset, length);
    }

    @Override
    public void write(long offset, MemorySegment src, long srcOffset, int length) {
        pass(offset);
        disk.write(offset, src, srcOffset, length);
    }

    @Override
    public void writeZeroes(long offset, long length) {
        disk.writeZeroes(offset, length);
    }

    @Override
    public void flush() {
        flushes.incrementAndGet();
    }

    @Override
    public String describe() {
        return "gated " + disk.describe();
    }

    @Override
    public void close() {
        gate.countDown();
        disk.close();
    }
}
