package io.vring.engine;

import io.vring.engine.memory.GuestMemory;
import io.vring.engine.packed.PackedDeviceQueue;
import io.vring.engine.packed.PackedDriverQueue;
import io.vring.engine.packed.PackedLayout;
import io.vring.engine.split.SplitDeviceQueue;
import io.vring.engine.split.SplitDriverQueue;
import io.vring.engine.split.SplitLayout;

/**
 * The two virtqueue layouts, with what a caller needs to place their areas and open either side.
 * The packed layout is chosen when VIRTIO_F_RING_PACKED is negotiated.
 */
public enum RingKind {
    SPLIT {
        @Override
        public long descriptorAreaSize(int size) {
            return SplitLayout.descriptorAreaSize(size);
        }

        @Override
        public long driverAreaSize(int size) {
            return SplitLayout.driverAreaSize(size);
        }

        @Override
        public long deviceAreaSize(int size) {
            return SplitLayout.deviceAreaSize(size);
        }

        @Override
        public boolean isValidSize(int size) {
            return SplitLayout.isValidQueueSize(size);
        }

        @Override
        public DeviceQueue device(String name, GuestMemory memory, int size, RingAddresses rings, long features) {
            return new SplitDeviceQueue(name, memory, size, rings, features);
        }

        @Override
        public DeviceQueue device(String name, GuestMemory memory, int size, RingAddresses rings, long features,
                                  int availPosition, int usedPosition) {
            return new SplitDeviceQueue(name, memory, size, rings, features, availPosition);
        }

        @Override
        public DriverQueue driver(String name, GuestMemory memory, int size, RingAddresses rings, long features,
                                  IndirectArea indirect) {
            return new SplitDriverQueue(name, memory, size, rings, features, indirect);
        }
    },
    PACKED {
        @Override
        public long descriptorAreaSize(int size) {
            return PackedLayout.descriptorRingSize(size);
        }

        @Override
        public long driverAreaSize(int size) {
            return PackedLayout.EVENT_AREA_SIZE;
        }

        @Override
        public long deviceAreaSize(int size) {
            return PackedLayout.EVENT_AREA_SIZE;
        }

        @Override
        public boolean isValidSize(int size) {
            return size >= 1 && size <= PackedLayout.MAX_QUEUE_SIZE;
        }

        @Override
        public DeviceQueue device(String name, GuestMemory memory, int size, RingAddresses rings, long features) {
            return new PackedDeviceQueue(name, memory, size, rings, features);
        }

        @Override
        public DeviceQueue device(String name, GuestMemory memory, int size, RingAddresses rings, long features,
                                  int availPosition, int usedPosition) {
            return new PackedDeviceQueue(name, memory, size, rings, features, availPosition, usedPosition);
        }

        @Override
        public DriverQueue driver(String name, GuestMemory memory, int size, RingAddresses rings, long features,
                                  IndirectArea indirect) {
            return new PackedDriverQueue(name, memory, size, rings, features, indirect);
        }
    };

    /** The kind the negotiated features select. */
    public static RingKind of(long features) {
        return VirtioFeatures.has(features, VirtioFeatures.RING_PACKED) ? PACKED : SPLIT;
    }

    /** Bytes of the descriptor area (16-byte aligned). */
    public abstract long descriptorAreaSize(int size);

    /** Bytes of the driver area (available ring, or driver event suppression). */
    public abstract long driverAreaSize(int size);

    /** Bytes of the device area (used ring, or device event suppression). */
    public abstract long deviceAreaSize(int size);

    /** Whether {@code size} is a legal queue size for this layout. */
    public abstract boolean isValidSize(int size);

    /** The device side of a queue whose areas the driver placed at {@code rings}. */
    public abstract DeviceQueue device(String name, GuestMemory memory, int size, RingAddresses rings, long features);

    /**
     * The device side resuming where an earlier device stopped. Split: {@code availPosition} is the
     * next avail index (the used index is read from the ring, {@code usedPosition} is ignored).
     * Packed: both are slot | wrap << 15.
     */
    public abstract DeviceQueue device(String name, GuestMemory memory, int size, RingAddresses rings, long features,
                                       int availPosition, int usedPosition);

    /** The driver side; it zeroes and owns the areas at {@code rings}. */
    public abstract DriverQueue driver(String name, GuestMemory memory, int size, RingAddresses rings, long features,
                                       IndirectArea indirect);
}
