package io.vring.engine.packed;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;

import static io.vring.engine.packed.PackedLayout.DESC_ADDR;
import static io.vring.engine.packed.PackedLayout.DESC_FLAGS;
import static io.vring.engine.packed.PackedLayout.DESC_ID;
import static io.vring.engine.packed.PackedLayout.DESC_LEN;

/**
 * Every access both sides of a packed ring make to shared memory, one static method each; the name
 * says the ordering ({@code lv} acquire load, {@code lp} plain load, {@code so} release store,
 * {@code sp} plain store). The handles are aligned and exact: the layout keeps every field naturally
 * aligned, and a call-site type slip fails at once instead of adapting silently.
 */
final class PackedRingAccess {
    private static final VarHandle U16 = ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN)
            .varHandle().withInvokeExactBehavior();
    private static final VarHandle U32 = ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN)
            .varHandle().withInvokeExactBehavior();
    private static final VarHandle U64 = ValueLayout.JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN)
            .varHandle().withInvokeExactBehavior();

    /** Acquire: what the other side wrote to the descriptor (or list) before these flags is visible after this. */
    static int lvFlags(MemorySegment ring, long off) {
        return Short.toUnsignedInt((short) U16.getAcquire(ring, off + DESC_FLAGS));
    }

    static int lpFlags(MemorySegment ring, long off) {
        return Short.toUnsignedInt((short) U16.get(ring, off + DESC_FLAGS));
    }

    static long lpAddr(MemorySegment ring, long off) {
        return (long) U64.get(ring, off + DESC_ADDR);
    }

    static int lpLen(MemorySegment ring, long off) {
        return (int) U32.get(ring, off + DESC_LEN);
    }

    static int lpId(MemorySegment ring, long off) {
        return Short.toUnsignedInt((short) U16.get(ring, off + DESC_ID));
    }

    static void spId(MemorySegment ring, long off, int id) {
        U16.set(ring, off + DESC_ID, (short) id);
    }

    static void spLen(MemorySegment ring, long off, int len) {
        U32.set(ring, off + DESC_LEN, len);
    }

    /** Plain: addr, len and id of one descriptor (the driver writing a list or an indirect table). */
    static void spDescriptor(MemorySegment table, long off, long addr, int len, int id) {
        U64.set(table, off + DESC_ADDR, addr);
        U32.set(table, off + DESC_LEN, len);
        U16.set(table, off + DESC_ID, (short) id);
    }

    static void spFlags(MemorySegment ring, long off, int flags) {
        U16.set(ring, off + DESC_FLAGS, (short) flags);
    }

    /** Release: everything written before (ids, lengths, the rest of a list) is visible to a reader of these flags. */
    static void soFlags(MemorySegment ring, long off, int flags) {
        U16.setRelease(ring, off + DESC_FLAGS, (short) flags);
    }

    /** Acquire, one aligned 32-bit load of an event structure: off_wrap and flags as a consistent pair. */
    static int lvEvent(MemorySegment event) {
        return (int) U32.getAcquire(event, (long) PackedLayout.EVENT_OFF_WRAP);
    }

    /** Release, one aligned 32-bit store: the reader never sees new flags with a stale off_wrap. */
    static void soEvent(MemorySegment event, int word) {
        U32.setRelease(event, (long) PackedLayout.EVENT_OFF_WRAP, word);
    }

    private PackedRingAccess() {
    }
}
