package io.vring.jmh;

import io.vring.engine.DeviceQueue;
import io.vring.engine.DriverQueue;
import io.vring.engine.RingKind;
import io.vring.engine.RingPlacement;
import io.vring.engine.inflight.InflightBuffer;
import io.vring.engine.memory.SharedMemory;

import java.lang.foreign.MemorySegment;

/**
 * One queue, both sides, in memfd shared memory at GPA 0, with a data area of one
 * {@link Payload#BYTES} buffer per descriptor; optionally with inflight tracking on the device side
 * (a one-queue inflight buffer in its own memfd, as a vhost-user back-end gets from the front-end).
 * What the throughput benchmarks share; read-only once opened. Notifications are off on both sides
 * (busy-poll).
 */
final class RingPair implements AutoCloseable {
    final SharedMemory memory;
    final SharedMemory inflight;
    final DriverQueue driver;
    final DeviceQueue device;
    final long dataGpa;
    final MemorySegment data;

    private RingPair(SharedMemory memory, SharedMemory inflight, DriverQueue driver, DeviceQueue device, long dataGpa,
                     MemorySegment data) {
        this.memory = memory;
        this.inflight = inflight;
        this.driver = driver;
        this.device = device;
        this.dataGpa = dataGpa;
        this.data = data;
    }

    static RingPair open(RingKind kind, int queueSize, long features, boolean trackInflight) {
        RingPlacement plan = RingPlacement.plan(kind, queueSize, 0, 0, (long) queueSize * Payload.BYTES);
        SharedMemory memory = SharedMemory.create("vring-bench", plan.totalBytes());
        var guest = memory.guestMemory(0);
        DriverQueue driver = kind.driver("bench-driver", guest, queueSize, plan.rings(), features, null);
        DeviceQueue device = kind.device("bench-device", guest, queueSize, plan.rings(), features);
        SharedMemory inflight = null;
        if (trackInflight) {
            inflight = SharedMemory.create("vring-bench-inflight", InflightBuffer.size(kind, 1, queueSize));
            device.trackInflight(InflightBuffer.of(kind, inflight.segment(), 1, queueSize), 0);
        }
        driver.disableUsedNotification();
        device.disableNotification();
        MemorySegment data = memory.segment().asSlice(plan.dataGpa(), (long) queueSize * Payload.BYTES);
        return new RingPair(memory, inflight, driver, device, plan.dataGpa(), data);
    }

    /** Closes both mappings; throws if either side broke during the run (the figures would be void). */
    @Override
    public void close() {
        try {
            if (driver.isBroken() || device.isBroken()) {
                throw new IllegalStateException("queue broke during the run: driver " + driver.brokenReason()
                        + ", device " + device.brokenReason());
            }
        } finally {
            memory.close();
            if (inflight != null) {
                inflight.close();
            }
        }
    }
}
