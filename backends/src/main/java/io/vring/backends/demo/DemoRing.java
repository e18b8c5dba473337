package io.vring.backends.demo;

import io.vring.engine.RingKind;
import io.vring.engine.RingPlacement;
import io.vring.engine.VirtioFeatures;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;

/**
 * The shared-memory plan both demo processes agree on: a control page at GPA 0 (stop flag, device
 * progress), then one queue placed by {@link RingPlacement} with a data area of one buffer slot per
 * descriptor. Everything the child process needs to map the same ring is in {@link #args()}.
 */
record DemoRing(RingKind kind, int queueSize, int payload) {
    static final long FEATURES = VirtioFeatures.bit(VirtioFeatures.VERSION_1) | VirtioFeatures.bit(VirtioFeatures.EVENT_IDX);
    static final long CONTROL_BYTES = 4096;
    /** Control page: the driver sets it to 1 when the device should stop. */
    static final long STOP = 0;
    /** Control page: chains the device has served (written by the device when it stops). */
    static final long SERVED = 8;
    /** Control page: the device sets it to 1 once it is polling. */
    static final long READY = 16;
    /** Control page: the first failure the device saw (0 = none); details go to its stderr. */
    static final long FAILED = 24;

    private static final VarHandle LONG = ValueLayout.JAVA_LONG.varHandle();

    RingPlacement placement() {
        return RingPlacement.plan(kind, queueSize, CONTROL_BYTES, 0, (long) queueSize * slotBytes());
    }

    /** Bytes of one buffer slot: the payload rounded up to 64 so slots do not share cache lines. */
    long slotBytes() {
        return (Math.max(payload, 8) + 63L) & -64L;
    }

    long totalBytes() {
        return CONTROL_BYTES + placement().totalBytes();
    }

    String[] args() {
        return new String[] {kind.name(), Integer.toString(queueSize), Integer.toString(payload)};
    }

    static DemoRing fromArgs(String[] args, int from) {
        return new DemoRing(RingKind.valueOf(args[from]), Integer.parseInt(args[from + 1]), Integer.parseInt(args[from + 2]));
    }

    static long get(MemorySegment control, long offset) {
        return (long) LONG.getAcquire(control, offset);
    }

    static void set(MemorySegment control, long offset, long value) {
        LONG.setRelease(control, offset, value);
    }
}
