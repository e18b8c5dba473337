package io.vring.engine.memory;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static org.junit.jupiter.api.Assertions.fail;

/**
 * A guest region that is a slice in the middle of a larger native segment whose margins hold a
 * canary pattern: a test can prove that nothing outside the guest's memory was written.
 */
public final class GuardedRegion {
    public static final int MARGIN = 4096;
    private static final byte CANARY = (byte) 0xA5;

    private final MemorySegment whole;
    private final GuestRegion region;

    public GuardedRegion(Arena arena, long gpa, long size) {
        this.whole = arena.allocate(size + 2L * MARGIN, 4096);
        whole.asSlice(0, MARGIN).fill(CANARY);
        whole.asSlice(MARGIN + size, MARGIN).fill(CANARY);
        this.region = new GuestRegion(gpa, size, gpa, 0, whole.asSlice(MARGIN, size));
    }

    public GuestRegion region() {
        return region;
    }

    public MemorySegment segment() {
        return region.segment();
    }

    /** Fails if any byte of either margin lost its canary value. */
    public void assertCanariesIntact() {
        long size = region.size();
        for (long i = 0; i < MARGIN; i++) {
            check(i);
            check(MARGIN + size + i);
        }
    }

    private void check(long offset) {
        byte b = whole.get(ValueLayout.JAVA_BYTE, offset);
        if (b != CANARY) {
            fail("canary byte at offset " + (offset - MARGIN) + " from the region start of GPA 0x"
                    + Long.toHexString(region.guestPhysicalAddress()) + " was overwritten with " + b);
        }
    }
}
