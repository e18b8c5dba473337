package io.vring.engine;

/**
 * Guest memory a driver queue owns for indirect descriptor tables: one table of
 * {@code maxEntries} 16-byte descriptors per chain id, the table of id {@code i} at
 * {@code guestAddress + i * maxEntries * 16}. Needs {@code size * maxEntries * 16} bytes, 16-aligned.
 */
public record IndirectArea(long guestAddress, int maxEntries) {
    public IndirectArea {
        if ((guestAddress & 15) != 0) {
            throw new IllegalArgumentException("indirect area must be 16-byte aligned, got 0x" + Long.toHexString(guestAddress));
        }
        if (maxEntries < 1) {
            throw new IllegalArgumentException("indirect tables need at least one entry, got " + maxEntries);
        }
    }

    /** Bytes needed for a queue of {@code queueSize}. */
    public long bytesFor(int queueSize) {
        return (long) queueSize * maxEntries * 16;
    }

    /** GPA of the table for chain id {@code id}. */
    public long tableAddress(int id) {
        return guestAddress + (long) id * maxEntries * 16;
    }
}
