package io.vring.protocol;

import io.vring.engine.memory.GuestMemory;
import io.vring.engine.memory.GuestRegion;
import io.vring.engine.memory.SharedMemory;
import io.vring.engine.os.Libc;
import io.vring.engine.os.NativeCallException;
import io.vring.protocol.message.MemoryRegion;

import java.util.ArrayList;
import java.util.List;

/**
 * The front-end's memory regions as this back-end mapped them, and the {@link GuestMemory} snapshot
 * the rings use. Owned by the control thread.
 *
 * <p>A change (a new table, a region added or removed) produces a new snapshot; the mappings the new
 * snapshot no longer uses are returned by the change and unmapped by the caller only after every ring
 * has moved to the new snapshot ({@link #release}).
 */
final class GuestMemoryMap implements AutoCloseable {
    private final int maxRegions;
    private final List<Mapped> regions = new ArrayList<>();
    private GuestMemory snapshot;

    /** One region and the mapping that backs it. */
    record Mapped(MemoryRegion region, SharedMemory mapping) {
        GuestRegion guestRegion() {
            return new GuestRegion(region.guestPhysAddr(), region.memorySize(), region.userAddr(),
                    region.mmapOffset(), mapping.segment());
        }
    }

    GuestMemoryMap(int maxRegions) {
        this.maxRegions = maxRegions;
    }

    /** The current snapshot, or null before any region was mapped. */
    GuestMemory snapshot() {
        return snapshot;
    }

    int regionCount() {
        return regions.size();
    }

    /**
     * Replaces the whole table (SET_MEM_TABLE): maps each region from its fd (taking the fds, closed on
     * any failure) and returns the old mappings to release once the rings moved on.
     */
    List<Mapped> replace(List<MemoryRegion> table, int[] fds) {
        List<Mapped> fresh = new ArrayList<>();
        try {
            for (int i = 0; i < table.size(); i++) {
                MemoryRegion r = table.get(i);
                checkOverlap(r, fresh);
                int fd = fds[i];
                fds[i] = -1;
                fresh.add(map(r, fd));
            }
        } catch (RuntimeException e) {
            closeFds(fds);
            release(fresh);
            throw e;
        }
        List<Mapped> old = new ArrayList<>(regions);
        regions.clear();
        regions.addAll(fresh);
        rebuild();
        return old;
    }

    /** Adds one region (ADD_MEM_REG), taking its fd. */
    void add(MemoryRegion region, int fd) {
        try {
            if (regions.size() >= maxRegions) {
                throw new VhostUserException(VhostUserError.InvalidParam, "cannot add " + region + ": all "
                        + maxRegions + " memory slots are in use");
            }
            checkOverlap(region, regions);
        } catch (RuntimeException e) {
            Libc.close(fd);
            throw e;
        }
        regions.add(map(region, fd));
        rebuild();
    }

    /**
     * Removes the region with the same GPA, user address and size (REM_MEM_REG; the file offset is
     * ignored, as the spec says) and returns its mapping to release once the rings moved on.
     */
    Mapped remove(MemoryRegion region) {
        for (int i = 0; i < regions.size(); i++) {
            MemoryRegion r = regions.get(i).region();
            if (r.guestPhysAddr() == region.guestPhysAddr() && r.userAddr() == region.userAddr()
                    && r.memorySize() == region.memorySize()) {
                Mapped m = regions.remove(i);
                rebuild();
                return m;
            }
        }
        throw new VhostUserException(VhostUserError.InvalidParam, "REM_MEM_REG: no region " + region + " is mapped");
    }

    /** Guest-physical address of the front-end user address {@code va}, for ring addresses. */
    long toGuestPhysical(long va, String what) {
        for (Mapped m : regions) {
            MemoryRegion r = m.region();
            if (Long.compareUnsigned(va - r.userAddr(), r.memorySize()) < 0) {
                return r.guestPhysAddr() + (va - r.userAddr());
            }
        }
        throw new VhostUserException(VhostUserError.InvalidParam, what + " at user address 0x" + Long.toHexString(va)
                + " lies in no memory region (" + regions.size() + " mapped)");
    }

    /** Unmaps mappings that no ring uses any more. */
    static void release(List<Mapped> mappings) {
        for (Mapped m : mappings) {
            m.mapping().close();
        }
    }

    /** Unmaps everything; the snapshot is gone. Only when no ring runs. */
    @Override
    public void close() {
        release(regions);
        regions.clear();
        snapshot = null;
    }

    private void rebuild() {
        snapshot = regions.isEmpty() ? null : GuestMemory.of(regions.stream().map(Mapped::guestRegion).toList());
    }

    private static Mapped map(MemoryRegion r, int fd) {
        try {
            return new Mapped(r, SharedMemory.openRange(fd, r.mmapOffset(), r.memorySize()));
        } catch (IllegalArgumentException | NativeCallException e) {
            throw new VhostUserException(VhostUserError.InvalidParam, "cannot map " + r + ": " + e.getMessage(), e);
        }
    }

    private static void checkOverlap(MemoryRegion r, List<Mapped> existing) {
        for (Mapped m : existing) {
            MemoryRegion o = m.region();
            if (overlaps(r.guestPhysAddr(), r.memorySize(), o.guestPhysAddr(), o.memorySize())) {
                throw new VhostUserException(VhostUserError.InvalidParam, r + " overlaps " + o + " in guest-physical space");
            }
            if (overlaps(r.userAddr(), r.memorySize(), o.userAddr(), o.memorySize())) {
                throw new VhostUserException(VhostUserError.InvalidParam, r + " overlaps " + o + " in front-end address space");
            }
        }
    }

    private static boolean overlaps(long a, long aSize, long b, long bSize) {
        return Long.compareUnsigned(a - b, bSize) < 0 || Long.compareUnsigned(b - a, aSize) < 0;
    }

    private static void closeFds(int[] fds) {
        for (int i = 0; i < fds.length; i++) {
            if (fds[i] >= 0) {
                Libc.close(fds[i]);
                fds[i] = -1;
            }
        }
    }
}
