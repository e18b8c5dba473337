package io.vring.protocol.message;

import io.vring.protocol.VhostUserError;
import io.vring.protocol.VhostUserException;

import java.nio.ByteBuffer;

/**
 * One guest memory region: guest-physical address, size, front-end user address, and the offset of
 * the region's first byte in the fd that comes with it (not necessarily page-aligned). u64 each.
 * Decoding rejects a zero size and any range that wraps past 2^64.
 */
public record MemoryRegion(long guestPhysAddr, long memorySize, long userAddr, long mmapOffset) implements Payload {
    public static final int SIZE = 32;
    public static final int GUEST_PHYS_ADDR = 0;
    public static final int MEMORY_SIZE = 8;
    public static final int USER_ADDR = 16;
    public static final int MMAP_OFFSET = 24;

    @Override
    public int encodedSize() {
        return SIZE;
    }

    @Override
    public void encode(ByteBuffer dst) {
        PayloadView.reserve(dst, SIZE).putLong(GUEST_PHYS_ADDR, guestPhysAddr).putLong(MEMORY_SIZE, memorySize)
                .putLong(USER_ADDR, userAddr).putLong(MMAP_OFFSET, mmapOffset);
    }

    public static MemoryRegion decode(ByteBuffer src) {
        ByteBuffer b = PayloadView.exactly(src, SIZE, "memory region");
        MemoryRegion r = new MemoryRegion(b.getLong(GUEST_PHYS_ADDR), b.getLong(MEMORY_SIZE), b.getLong(USER_ADDR),
                b.getLong(MMAP_OFFSET));
        r.validate();
        return r;
    }

    /** Throws InvalidParam for a zero size or a range that wraps (gpa, user address or file offset). */
    public void validate() {
        if (memorySize == 0) {
            throw new VhostUserException(VhostUserError.InvalidParam, "memory region at gpa 0x"
                    + Long.toHexString(guestPhysAddr) + " has size 0");
        }
        wraps("guest_phys_addr", guestPhysAddr);
        wraps("userspace_addr", userAddr);
        wraps("mmap_offset", mmapOffset);
    }

    private void wraps(String field, long start) {
        // Unsigned: start + size - 1 must not carry past 2^64.
        if (Long.compareUnsigned(start + (memorySize - 1), start) < 0) {
            throw new VhostUserException(VhostUserError.InvalidParam, "memory region " + field + " 0x"
                    + Long.toHexString(start) + " + size 0x" + Long.toHexString(memorySize) + " wraps past 2^64");
        }
    }

    @Override
    public String toString() {
        return "MemoryRegion[gpa=0x" + Long.toHexString(guestPhysAddr) + ", size=0x" + Long.toHexString(memorySize)
                + ", uaddr=0x" + Long.toHexString(userAddr) + ", offset=0x" + Long.toHexString(mmapOffset) + "]";
    }
}
