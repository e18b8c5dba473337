package io.vring.engine;

import io.vring.engine.memory.GuestMemory;
import io.vring.engine.memory.GuestRegion;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * One queue of either ring kind, both sides, on one block of native shared memory placed by
 * {@link RingPlacement}: rings, an indirect area, then a data area the test carves buffers from.
 */
public final class RingFixture implements AutoCloseable {
    public static final long BASE_GPA = 0x1_0000_0000L;
    public static final int MAX_INDIRECT = 16;

    public final Arena arena = Arena.ofShared();
    public final MemorySegment segment;
    public final GuestMemory memory;
    public final DeviceQueue device;
    public final DriverQueue driver;
    public final long dataGpa;
    public final long dataBytes;

    public enum Kind { SPLIT, PACKED }

    public RingFixture(Kind kind, int size, long features, long dataBytes) {
        RingKind ringKind = RingKind.valueOf(kind.name());
        int maxIndirect = VirtioFeatures.has(features, VirtioFeatures.INDIRECT_DESC) ? MAX_INDIRECT : 0;
        RingPlacement plan = RingPlacement.plan(ringKind, size, BASE_GPA, maxIndirect, dataBytes);
        this.segment = arena.allocate(plan.totalBytes(), 4096);
        this.memory = GuestMemory.of(new GuestRegion(BASE_GPA, plan.totalBytes(), BASE_GPA, 0, segment));
        this.dataGpa = plan.dataGpa();
        this.dataBytes = dataBytes;
        this.driver = ringKind.driver("driver", memory, size, plan.rings(), features, plan.indirect());
        this.device = ringKind.device("device", memory, size, plan.rings(), features);
    }

    /** Offset in {@link #segment} of a GPA. */
    public long offsetOf(long gpa) {
        return gpa - BASE_GPA;
    }

    @Override
    public void close() {
        arena.close();
    }
}
