package io.vring.engine.memory;

import java.lang.foreign.MemorySegment;

/**
 * One mapped region of guest memory: where it sits in guest-physical space, where the front-end
 * mapped it in its own address space, and the local mapping that backs it.
 *
 * @param guestPhysicalAddress first guest-physical address (GPA) of the region
 * @param size                 length in bytes, equal to {@code segment.byteSize()}
 * @param userAddress          the front-end's virtual address of the region's first byte (vhost-user
 *                             ring addresses are given in this space); equal to the GPA when unused
 * @param mmapOffset           offset in the backing file at which the mapping starts
 * @param segment              the local mapping of exactly {@code size} bytes
 */
public record GuestRegion(long guestPhysicalAddress, long size, long userAddress, long mmapOffset,
                          MemorySegment segment) {

    public GuestRegion {
        if (size <= 0) {
            throw new IllegalArgumentException("region size must be positive, got " + size);
        }
        if (segment.byteSize() != size) {
            throw new IllegalArgumentException("region of " + size + " bytes backed by a segment of "
                    + segment.byteSize() + " bytes");
        }
        if (guestPhysicalAddress + size < guestPhysicalAddress && guestPhysicalAddress + size != 0) {
            throw new IllegalArgumentException("region at GPA 0x" + Long.toHexString(guestPhysicalAddress)
                    + " of " + size + " bytes wraps the address space");
        }
    }

    /** One past the last GPA of the region (unsigned; 0 when the region ends at 2^64). */
    public long guestPhysicalEnd() {
        return guestPhysicalAddress + size;
    }

    /** True if {@code gpa} lies in this region (unsigned comparison). */
    public boolean containsGuestPhysical(long gpa) {
        return Long.compareUnsigned(gpa - guestPhysicalAddress, size) < 0;
    }

    /** True if the front-end virtual address {@code va} lies in this region (unsigned comparison). */
    public boolean containsUserAddress(long va) {
        return Long.compareUnsigned(va - userAddress, size) < 0;
    }
}
