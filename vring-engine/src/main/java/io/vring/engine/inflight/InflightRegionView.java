package io.vring.engine.inflight;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;

/**
 * One queue's part of the inflight region, and every access the two layouts make to it, named by
 * ordering (STYLE): {@code lp} plain load, {@code lv} acquire load, {@code sp} plain store,
 * {@code so} release store. Offsets are queue-region offsets, naturally aligned; little-endian.
 * The test probe hears of every store twice, just before ({@code storing}) and just after
 * ({@link #stored()}), so a crash test can stop the back-end on either side of any store.
 */
abstract sealed class InflightRegionView permits SplitInflightQueue, PackedInflightQueue {
    private static final VarHandle U8 = ValueLayout.JAVA_BYTE.varHandle();
    private static final VarHandle U16 = ValueLayout.JAVA_SHORT.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN).varHandle();
    private static final VarHandle U32 = ValueLayout.JAVA_INT.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN).varHandle();
    private static final VarHandle U64 = ValueLayout.JAVA_LONG.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN).varHandle();

    final MemorySegment region;
    final int queueSize;
    private final StoreProbe probe;

    InflightRegionView(MemorySegment region, int queueSize, StoreProbe probe) {
        this.region = region;
        this.queueSize = queueSize;
        this.probe = probe;
    }

    final int lp8(long offset) {
        return Byte.toUnsignedInt((byte) U8.get(region, offset));
    }

    final int lv8(long offset) {
        return Byte.toUnsignedInt((byte) U8.getAcquire(region, offset));
    }

    final void so8(long offset, int value) {
        storing();
        U8.setRelease(region, offset, (byte) value);
    }

    final int lp16(long offset) {
        return Short.toUnsignedInt((short) U16.get(region, offset));
    }

    final int lv16(long offset) {
        return Short.toUnsignedInt((short) U16.getAcquire(region, offset));
    }

    final void sp16(long offset, int value) {
        storing();
        U16.set(region, offset, (short) value);
    }

    final void so16(long offset, int value) {
        storing();
        U16.setRelease(region, offset, (short) value);
    }

    final int lp32(long offset) {
        return (int) U32.get(region, offset);
    }

    final void sp32(long offset, int value) {
        storing();
        U32.set(region, offset, value);
    }

    final long lp64(long offset) {
        return (long) U64.get(region, offset);
    }

    final void sp64(long offset, long value) {
        storing();
        U64.set(region, offset, value);
    }

    final void so64(long offset, long value) {
        storing();
        U64.setRelease(region, offset, value);
    }

    /** Tells the test probe, if any, that a store to the region is about to be made. */
    private void storing() {
        if (probe != null) {
            probe.storing();
        }
    }

    /** Tells the test probe, if any, that one store to the region is complete. */
    final void stored() {
        if (probe != null) {
            probe.stored();
        }
    }
}
