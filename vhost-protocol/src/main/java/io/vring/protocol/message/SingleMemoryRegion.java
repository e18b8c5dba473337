package io.vring.protocol.message;

import java.nio.ByteBuffer;

/**
 * ADD_MEM_REG / REM_MEM_REG: u64 padding, then one {@link MemoryRegion}. The padding is written as zero
 * and ignored when read (rust-vmm does not check it either); REM_MEM_REG matches a region on guest
 * address, user address and size and ignores the mmap offset.
 */
public record SingleMemoryRegion(MemoryRegion region) implements Payload {
    public static final int SIZE = 40;
    public static final int PADDING = 0;
    /** Offset of the region. */
    public static final int REGION = 8;

    @Override
    public int encodedSize() {
        return SIZE;
    }

    @Override
    public void encode(ByteBuffer dst) {
        ByteBuffer b = PayloadView.reserve(dst, SIZE);
        b.putLong(PADDING, 0).position(REGION);
        region.encode(b);
    }

    public static SingleMemoryRegion decode(ByteBuffer src) {
        ByteBuffer b = PayloadView.exactly(src, SIZE, "single memory region");
        return new SingleMemoryRegion(MemoryRegion.decode(b.slice(REGION, MemoryRegion.SIZE)));
    }
}
