package io.vring.engine.split;

import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;

/**
 * The little-endian accessors both sides of a split ring use. {@link #U16} is the aligned handle for
 * the index and flags fields that need acquire/release (the ring alignment rules keep them aligned);
 * the {@code LE_*} layouts are plain, unaligned accesses for descriptors and ring entries, which are
 * only read after an acquire of the index that published them (indirect tables have no alignment rule).
 */
final class SplitRingAccess {
    static final VarHandle U16 = ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN).varHandle();
    static final ValueLayout.OfShort LE_U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfInt LE_U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfLong LE_U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private SplitRingAccess() {
    }
}
