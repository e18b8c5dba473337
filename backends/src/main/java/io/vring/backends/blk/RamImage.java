package io.vring.backends.blk;

import io.vring.engine.memory.SharedMemory;

import java.lang.foreign.MemorySegment;

/**
 * A disk in memory: a memfd mapping, so pages are only taken when first written, and reads and
 * writes are plain copies between the mapping and guest memory. Lost when the process ends.
 */
final class RamImage implements DiskImage {
    private final SharedMemory memory;
    private final MemorySegment bytes;
    private final boolean readOnly;

    private RamImage(SharedMemory memory, boolean readOnly) {
        this.memory = memory;
        this.bytes = memory.segment();
        this.readOnly = readOnly;
    }

    /** A zeroed RAM disk; {@code readOnly} serves only tests of the RO path (nothing can fill it). */
    static RamImage create(long sizeBytes, boolean readOnly) {
        if (sizeBytes < BlkLayout.SECTOR_SIZE) {
            throw new IllegalArgumentException("a RAM disk needs at least one 512-byte sector, got " + sizeBytes + " bytes");
        }
        return new RamImage(SharedMemory.create("vring-blk-ram", sizeBytes), readOnly);
    }

    @Override
    public long sizeBytes() {
        return bytes.byteSize();
    }

    @Override
    public boolean isReadOnly() {
        return readOnly;
    }

    @Override
    public void read(long offset, MemorySegment dst, long dstOffset, int length) {
        MemorySegment.copy(bytes, offset, dst, dstOffset, length);
    }

    @Override
    public void write(long offset, MemorySegment src, long srcOffset, int length) {
        MemorySegment.copy(src, srcOffset, bytes, offset, length);
    }

    @Override
    public void writeZeroes(long offset, long length) {
        bytes.asSlice(offset, length).fill((byte) 0);
    }

    @Override
    public void flush() {
        // Memory is as durable as it gets.
    }

    @Override
    public String describe() {
        return "RAM disk (" + bytes.byteSize() + " bytes" + (readOnly ? ", read-only" : "") + ")";
    }

    @Override
    public void close() {
        memory.close();
    }
}
