package io.vring.engine.memory;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/**
 * An immutable snapshot of the mapped guest memory regions.
 *
 * <p>Translation comes in two shapes. Set-up paths (ring areas, indirect tables) ask for one
 * contiguous slice with {@link #slice(long, long)} and get an exception when the range is not
 * backed by a single region. The data path resolves buffers without allocating: {@link #regionOf}
 * finds the region index of a GPA, and {@link #segment(int)}, {@link #guestPhysicalStart(int)} and
 * {@link #regionSize(int)} give what is needed to address it; a buffer that spans two GPA-adjacent
 * regions is walked region by region by the caller (see {@code DescriptorChain}).
 *
 * <p>A snapshot is never changed: when the front-end adds or removes regions a new snapshot replaces
 * it, and the old mappings are released by their owner only once every worker has moved on.
 * Instances are safe to share between threads.
 */
public final class GuestMemory {
    private final GuestRegion[] regions;
    private final long[] gpaStart;
    private final long[] sizes;
    private final MemorySegment[] segments;

    private GuestMemory(GuestRegion[] sorted) {
        this.regions = sorted;
        this.gpaStart = new long[sorted.length];
        this.sizes = new long[sorted.length];
        this.segments = new MemorySegment[sorted.length];
        for (int i = 0; i < sorted.length; i++) {
            gpaStart[i] = sorted[i].guestPhysicalAddress();
            sizes[i] = sorted[i].size();
            segments[i] = sorted[i].segment();
        }
    }

    /** A snapshot of the given regions; they must not overlap in guest-physical space. */
    public static GuestMemory of(List<GuestRegion> regions) {
        GuestRegion[] sorted = regions.toArray(GuestRegion[]::new);
        Arrays.sort(sorted, Comparator.comparing(GuestRegion::guestPhysicalAddress, Long::compareUnsigned));
        for (int i = 1; i < sorted.length; i++) {
            GuestRegion prev = sorted[i - 1];
            if (Long.compareUnsigned(prev.guestPhysicalEnd(), sorted[i].guestPhysicalAddress()) > 0
                    && prev.guestPhysicalEnd() != 0) {
                throw new IllegalArgumentException("guest regions overlap: GPA 0x"
                        + Long.toHexString(prev.guestPhysicalAddress()) + "+0x" + Long.toHexString(prev.size())
                        + " and 0x" + Long.toHexString(sorted[i].guestPhysicalAddress()));
            }
        }
        return new GuestMemory(sorted);
    }

    /** A snapshot of the given regions. */
    public static GuestMemory of(GuestRegion... regions) {
        return of(List.of(regions));
    }

    /** A snapshot with {@code region} added. */
    public GuestMemory withRegion(GuestRegion region) {
        List<GuestRegion> all = new ArrayList<>(List.of(regions));
        all.add(region);
        return of(all);
    }

    /** A snapshot without the region that starts at {@code gpa} and has {@code size} bytes. */
    public GuestMemory withoutRegion(long gpa, long size) {
        List<GuestRegion> all = new ArrayList<>(List.of(regions));
        if (!all.removeIf(r -> r.guestPhysicalAddress() == gpa && r.size() == size)) {
            throw new GuestMemoryException("no region at GPA 0x" + Long.toHexString(gpa) + " of " + size + " bytes");
        }
        return of(all);
    }

    /** The regions in ascending GPA order. */
    public List<GuestRegion> regions() {
        return List.of(regions);
    }

    public int regionCount() {
        return regions.length;
    }

    /** Index of the region that holds {@code gpa}, or -1. Does not allocate. */
    public int regionOf(long gpa) {
        long[] starts = gpaStart;
        for (int i = 0; i < starts.length; i++) {
            if (Long.compareUnsigned(gpa - starts[i], sizes[i]) < 0) {
                return i;
            }
        }
        return -1;
    }

    /** The mapping of region {@code index}. */
    public MemorySegment segment(int index) {
        return segments[index];
    }

    /** First GPA of region {@code index}. */
    public long guestPhysicalStart(int index) {
        return gpaStart[index];
    }

    /** Size in bytes of region {@code index}. */
    public long regionSize(int index) {
        return sizes[index];
    }

    /**
     * A slice of {@code length} bytes at {@code gpa} that lies in one region. Allocates a segment:
     * for set-up paths, not per request.
     *
     * @throws GuestMemoryException if no single region holds the whole range
     */
    public MemorySegment slice(long gpa, long length) {
        int r = regionOf(gpa);
        if (r < 0) {
            throw new GuestMemoryException("GPA 0x" + Long.toHexString(gpa) + " is outside guest memory");
        }
        long offset = gpa - gpaStart[r];
        if (length < 0 || length > sizes[r] - offset) {
            throw new GuestMemoryException("GPA range 0x" + Long.toHexString(gpa) + "+" + length
                    + " runs past the end of its region at 0x" + Long.toHexString(gpaStart[r] + sizes[r]));
        }
        return segments[r].asSlice(offset, length);
    }

    /**
     * True if every byte of {@code [gpa, gpa+length)} is backed, possibly by several GPA-adjacent
     * regions. Does not allocate.
     */
    public boolean isBacked(long gpa, long length) {
        long remaining = length;
        long at = gpa;
        while (remaining > 0) {
            int r = regionOf(at);
            if (r < 0) {
                return false;
            }
            long run = Math.min(remaining, gpaStart[r] + sizes[r] - at);
            at += run;
            remaining -= run;
        }
        return true;
    }

    /**
     * Translates a front-end virtual address (vhost-user ring addresses) to a GPA.
     *
     * @throws GuestMemoryException if no region's user address range holds {@code va}
     */
    public long userToGuestPhysical(long va) {
        for (GuestRegion region : regions) {
            if (region.containsUserAddress(va)) {
                return region.guestPhysicalAddress() + (va - region.userAddress());
            }
        }
        throw new GuestMemoryException("front-end address 0x" + Long.toHexString(va) + " is in no memory region");
    }

    @Override
    public String toString() {
        StringBuilder sb = new StringBuilder("GuestMemory[");
        for (int i = 0; i < regions.length; i++) {
            if (i > 0) {
                sb.append(", ");
            }
            sb.append("0x").append(Long.toHexString(gpaStart[i])).append("+0x").append(Long.toHexString(sizes[i]));
        }
        return sb.append(']').toString();
    }
}
