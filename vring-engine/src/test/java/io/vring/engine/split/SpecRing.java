package io.vring.engine.split;

import io.vring.engine.RingAddresses;
import io.vring.engine.memory.GuestRegion;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * A split ring read and written byte by byte at the offsets printed in the spec's tables
 * (reference/virtqueue.md §1.2), little-endian by construction: the test's independent view of the
 * wire format. It deliberately does not use {@link SplitLayout}, so a wrong constant there cannot
 * make the engine and its tests agree on the wrong bytes.
 *
 * <pre>
 * descriptor i at D + 16i : addr u64 @0, len u32 @8, flags u16 @12, next u16 @14
 * driver area  at A       : flags u16 @0, idx u16 @2, ring[i] u16 @4+2i, used_event u16 @4+2N
 * device area  at U       : flags u16 @0, idx u16 @2, id u32 @4+8i, len u32 @8+8i, avail_event u16 @4+8N
 * </pre>
 */
final class SpecRing {
    static final int NEXT = 1;
    static final int WRITE = 2;
    static final int INDIRECT = 4;

    private final MemorySegment region;
    private final long regionGpa;
    final int n;
    final long desc;
    final long avail;
    final long used;

    SpecRing(GuestRegion region, int n, long desc, long avail, long used) {
        this.region = region.segment();
        this.regionGpa = region.guestPhysicalAddress();
        this.n = n;
        this.desc = desc;
        this.avail = avail;
        this.used = used;
    }

    RingAddresses addresses() {
        return new RingAddresses(desc, avail, used);
    }

    // Little-endian, one byte at a time: no ValueLayout byte order can leak in.

    void put(long gpa, long value, int bytes) {
        for (int b = 0; b < bytes; b++) {
            region.set(ValueLayout.JAVA_BYTE, gpa - regionGpa + b, (byte) (value >>> (8 * b)));
        }
    }

    long get(long gpa, int bytes) {
        long v = 0;
        for (int b = 0; b < bytes; b++) {
            v |= (region.get(ValueLayout.JAVA_BYTE, gpa - regionGpa + b) & 0xFFL) << (8 * b);
        }
        return v;
    }

    byte[] bytes(long gpa, int length) {
        byte[] out = new byte[length];
        MemorySegment.copy(region, ValueLayout.JAVA_BYTE, gpa - regionGpa, out, 0, length);
        return out;
    }

    void fill(long gpa, int length, byte value) {
        region.asSlice(gpa - regionGpa, length).fill(value);
    }

    /** The 16 bytes of a descriptor as the spec encodes them. */
    static byte[] encodedDescriptor(long addr, int len, int flags, int next) {
        byte[] b = new byte[16];
        for (int i = 0; i < 8; i++) {
            b[i] = (byte) (addr >>> (8 * i));
        }
        for (int i = 0; i < 4; i++) {
            b[8 + i] = (byte) (len >>> (8 * i));
        }
        b[12] = (byte) flags;
        b[13] = (byte) (flags >>> 8);
        b[14] = (byte) next;
        b[15] = (byte) (next >>> 8);
        return b;
    }

    // Descriptor table (and indirect tables, same entry format).

    void descriptor(int i, long addr, int len, int flags, int next) {
        tableEntry(desc, i, addr, len, flags, next);
    }

    void tableEntry(long tableGpa, int i, long addr, int len, int flags, int next) {
        long at = tableGpa + 16L * i;
        put(at, addr, 8);
        put(at + 8, Integer.toUnsignedLong(len), 4);
        put(at + 12, flags, 2);
        put(at + 14, next, 2);
    }

    byte[] descriptorBytes(int i) {
        return bytes(desc + 16L * i, 16);
    }

    byte[] tableEntryBytes(long tableGpa, int i) {
        return bytes(tableGpa + 16L * i, 16);
    }

    int descFlags(int i) {
        return (int) get(desc + 16L * i + 12, 2);
    }

    int descNext(int i) {
        return (int) get(desc + 16L * i + 14, 2);
    }

    long descAddr(int i) {
        return get(desc + 16L * i, 8);
    }

    long descLen(int i) {
        return get(desc + 16L * i + 8, 4);
    }

    // Driver area.

    int availFlags() {
        return (int) get(avail, 2);
    }

    void availFlags(int flags) {
        put(avail, flags, 2);
    }

    int availIdx() {
        return (int) get(avail + 2, 2);
    }

    void availIdx(int idx) {
        put(avail + 2, idx, 2);
    }

    int availRing(int slot) {
        return (int) get(avail + 4 + 2L * slot, 2);
    }

    void availRing(int slot, int head) {
        put(avail + 4 + 2L * slot, head, 2);
    }

    int usedEvent() {
        return (int) get(avail + 4 + 2L * n, 2);
    }

    void usedEvent(int value) {
        put(avail + 4 + 2L * n, value, 2);
    }

    /** Hand-written driver: puts {@code head} in the next ring slot and bumps idx. */
    void offer(int head) {
        int idx = availIdx();
        availRing(idx % n, head);
        availIdx((idx + 1) & 0xFFFF);
    }

    // Device area.

    int usedFlags() {
        return (int) get(used, 2);
    }

    void usedFlags(int flags) {
        put(used, flags, 2);
    }

    int usedIdx() {
        return (int) get(used + 2, 2);
    }

    void usedIdx(int idx) {
        put(used + 2, idx, 2);
    }

    long usedId(int slot) {
        return get(used + 4 + 8L * slot, 4);
    }

    long usedLen(int slot) {
        return get(used + 8 + 8L * slot, 4);
    }

    byte[] usedElementBytes(int slot) {
        return bytes(used + 4 + 8L * slot, 8);
    }

    void usedElement(int slot, long id, long len) {
        put(used + 4 + 8L * slot, id, 4);
        put(used + 8 + 8L * slot, len, 4);
    }

    int availEvent() {
        return (int) get(used + 4 + 8L * n, 2);
    }

    void availEvent(int value) {
        put(used + 4 + 8L * n, value, 2);
    }
}
