package io.vring.engine;

import io.vring.engine.memory.GuestMemory;
import io.vring.engine.memory.GuestRegion;
import io.vring.engine.split.SplitDeviceQueue;
import io.vring.engine.split.SplitDriverQueue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * One queue of either ring kind, both sides, on one block of native shared memory: rings at the
 * start, an indirect area, then a data area the test carves buffers from.
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
    public final String kind;

    public enum Kind { SPLIT, PACKED }

    public RingFixture(Kind kind, int size, long features, long dataBytes) {
        this.kind = kind.name().toLowerCase();
        long desc = 16L * size;
        long driverArea = 6L + 2L * size;
        long deviceArea = 6L + 8L * size;
        long indirect = (long) size * MAX_INDIRECT * 16;
        long rings = align(desc, 4096) + align(driverArea, 4096) + align(deviceArea, 4096);
        long total = rings + align(indirect, 4096) + align(dataBytes, 4096);
        this.segment = arena.allocate(total, 4096);
        this.memory = GuestMemory.of(new GuestRegion(BASE_GPA, total, BASE_GPA, 0, segment));
        long d = BASE_GPA;
        long a = d + align(desc, 4096);
        long u = a + align(driverArea, 4096);
        long ind = u + align(deviceArea, 4096);
        this.dataGpa = ind + align(indirect, 4096);
        this.dataBytes = dataBytes;
        RingAddresses addresses = new RingAddresses(d, a, u);
        IndirectArea area = VirtioFeatures.has(features, VirtioFeatures.INDIRECT_DESC) ? new IndirectArea(ind, MAX_INDIRECT) : null;
        switch (kind) {
            case SPLIT -> {
                this.driver = new SplitDriverQueue("driver", memory, size, addresses, features, area);
                this.device = new SplitDeviceQueue("device", memory, size, addresses, features);
            }
            default -> {
                this.driver = newPackedDriver(memory, size, addresses, features, area);
                this.device = newPackedDevice(memory, size, addresses, features);
            }
        }
    }

    private static DriverQueue newPackedDriver(GuestMemory memory, int size, RingAddresses a, long features, IndirectArea area) {
        return new io.vring.engine.packed.PackedDriverQueue("driver", memory, size, a, features, area);
    }

    private static DeviceQueue newPackedDevice(GuestMemory memory, int size, RingAddresses a, long features) {
        return new io.vring.engine.packed.PackedDeviceQueue("device", memory, size, a, features);
    }

    /** Offset in {@link #segment} of a GPA. */
    public long offsetOf(long gpa) {
        return gpa - BASE_GPA;
    }

    private static long align(long v, long a) {
        return (v + a - 1) & -a;
    }

    @Override
    public void close() {
        arena.close();
    }
}
