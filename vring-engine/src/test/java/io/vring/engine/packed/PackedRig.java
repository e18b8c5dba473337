package io.vring.engine.packed;

import io.vring.engine.IndirectArea;
import io.vring.engine.RingAddresses;
import io.vring.engine.VirtioFeatures;

/**
 * One guest region laid out for packed queues in tests: per queue a descriptor ring followed by its
 * two event structures, an indirect area, and a fixed buffer slot per buffer id; then free space.
 * The region sits at {@link #BASE} inside {@link GuardedMemory}'s canary pages.
 */
final class PackedRig implements AutoCloseable {
    static final long BASE = 0x10_0000;
    static final int INDIRECT_ENTRIES = 4;
    /** Per id: 16 readable bytes then 48 writable bytes. */
    static final int BUFFER_STRIDE = 64;
    static final int READABLE = 16;
    static final int WRITABLE = 48;
    static final long SCRATCH_BYTES = 64 * 1024;

    static final long ALL_FEATURES = VirtioFeatures.bit(VirtioFeatures.VERSION_1) | VirtioFeatures.bit(VirtioFeatures.RING_PACKED)
            | VirtioFeatures.bit(VirtioFeatures.INDIRECT_DESC) | VirtioFeatures.bit(VirtioFeatures.EVENT_IDX);
    static final long PLAIN = VirtioFeatures.bit(VirtioFeatures.VERSION_1) | VirtioFeatures.bit(VirtioFeatures.RING_PACKED)
            | VirtioFeatures.bit(VirtioFeatures.INDIRECT_DESC);

    final int size;
    final GuardedMemory guarded;
    private final long[] ring;
    private final long[] indirect;
    private final long[] buffers;
    private final long scratch;

    PackedRig(int size, int queues) {
        this.size = size;
        long ringBytes = pageUp(16L * size + 8);
        long indirectBytes = pageUp((long) size * INDIRECT_ENTRIES * 16);
        long bufferBytes = pageUp((long) size * BUFFER_STRIDE);
        long perQueue = ringBytes + indirectBytes + bufferBytes;
        ring = new long[queues];
        indirect = new long[queues];
        buffers = new long[queues];
        long at = BASE;
        for (int q = 0; q < queues; q++) {
            ring[q] = at;
            indirect[q] = at + ringBytes;
            buffers[q] = at + ringBytes + indirectBytes;
            at += perQueue;
        }
        scratch = at;
        guarded = new GuardedMemory(BASE, perQueue * queues + SCRATCH_BYTES);
    }

    private static long pageUp(long n) {
        return (n + 4095) & ~4095L;
    }

    RingAddresses rings(int q) {
        return new RingAddresses(ring[q], ring[q] + 16L * size, ring[q] + 16L * size + 4);
    }

    long ring(int q) {
        return ring[q];
    }

    /** GPA of ring slot {@code slot} of queue {@code q}. */
    long slot(int q, int slot) {
        return ring[q] + 16L * slot;
    }

    long driverEvent(int q) {
        return rings(q).driverArea();
    }

    long deviceEvent(int q) {
        return rings(q).deviceArea();
    }

    IndirectArea indirect(int q) {
        return new IndirectArea(indirect[q], INDIRECT_ENTRIES);
    }

    long readable(int q, int id) {
        return buffers[q] + (long) id * BUFFER_STRIDE;
    }

    long writable(int q, int id) {
        return readable(q, id) + READABLE;
    }

    /** Free bytes after all queues, 16-aligned, for hand-written tables and buffers. */
    long scratch() {
        return scratch;
    }

    PackedDeviceQueue device(int q, long features) {
        return new PackedDeviceQueue("packed device " + q, guarded.memory, size, rings(q), features);
    }

    PackedDriverQueue driver(int q, long features) {
        return new PackedDriverQueue("packed driver " + q, guarded.memory, size, rings(q), features, indirect(q));
    }

    @Override
    public void close() {
        guarded.close();
    }
}
