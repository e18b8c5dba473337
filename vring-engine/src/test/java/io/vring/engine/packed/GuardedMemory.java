package io.vring.engine.packed;

import io.vring.engine.memory.GuestMemory;
import io.vring.engine.memory.GuestRegion;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * Guest memory for tests: one native segment holding every region with a page of canary bytes
 * before, between and after them, so a test can prove nothing outside guest memory was written.
 */
final class GuardedMemory implements AutoCloseable {
    static final int GUARD = 4096;
    static final byte CANARY = (byte) 0xA5;
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final Arena arena = Arena.ofShared();
    private final MemorySegment whole;
    private final long[] gpas;
    private final long[] sizes;
    private final long[] offsets;
    final GuestMemory memory;

    /** Regions given as GPA, size pairs; sizes multiples of 4096. */
    GuardedMemory(long... gpaSizePairs) {
        int n = gpaSizePairs.length / 2;
        gpas = new long[n];
        sizes = new long[n];
        offsets = new long[n];
        long total = GUARD;
        for (int i = 0; i < n; i++) {
            gpas[i] = gpaSizePairs[2 * i];
            sizes[i] = gpaSizePairs[2 * i + 1];
            offsets[i] = total;
            total += sizes[i] + GUARD;
        }
        whole = arena.allocate(total, 4096);
        whole.fill(CANARY);
        List<GuestRegion> regions = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            MemorySegment s = whole.asSlice(offsets[i], sizes[i]);
            s.fill((byte) 0);
            regions.add(new GuestRegion(gpas[i], sizes[i], gpas[i], 0, s));
        }
        memory = GuestMemory.of(regions);
    }

    /** The host bytes backing {@code [gpa, gpa+len)} (within one region). */
    MemorySegment at(long gpa, long len) {
        return memory.slice(gpa, len);
    }

    void putLong(long gpa, long v) {
        at(gpa, 8).set(U64, 0, v);
    }

    void putInt(long gpa, int v) {
        at(gpa, 4).set(U32, 0, v);
    }

    void putShort(long gpa, int v) {
        at(gpa, 2).set(U16, 0, (short) v);
    }

    long getLong(long gpa) {
        return at(gpa, 8).get(U64, 0);
    }

    int getInt(long gpa) {
        return at(gpa, 4).get(U32, 0);
    }

    int getU16(long gpa) {
        return Short.toUnsignedInt(at(gpa, 2).get(U16, 0));
    }

    byte[] bytes(long gpa, int len) {
        return at(gpa, len).toArray(ValueLayout.JAVA_BYTE);
    }

    /** A copy of every region's bytes, to prove a broken queue writes nothing more. */
    byte[] snapshot() {
        long total = 0;
        for (long s : sizes) {
            total += s;
        }
        byte[] out = new byte[(int) total];
        int at = 0;
        for (int i = 0; i < sizes.length; i++) {
            MemorySegment.copy(whole, ValueLayout.JAVA_BYTE, offsets[i], out, at, (int) sizes[i]);
            at += (int) sizes[i];
        }
        return out;
    }

    /** True if every byte outside the guest regions still holds the canary. */
    boolean canariesIntact() {
        long at = 0;
        for (int i = 0; i <= offsets.length; i++) {
            long end = i < offsets.length ? offsets[i] : whole.byteSize();
            for (long b = at; b < end; b++) {
                if (whole.get(ValueLayout.JAVA_BYTE, b) != CANARY) {
                    return false;
                }
            }
            if (i < offsets.length) {
                at = offsets[i] + sizes[i];
            }
        }
        return true;
    }

    @Override
    public void close() {
        arena.close();
    }
}
