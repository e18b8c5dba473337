package io.vring.engine.packed;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vring.engine.VirtioFeatures;
import io.vring.engine.chain.DescriptorChain;

import java.lang.management.ManagementFactory;

import org.junit.jupiter.api.Test;

/**
 * The device data path allocates nothing: poll, addUsed, publish, needsNotification,
 * enable/disableNotification and hasAvailable are measured alone (the driver's calls sit between
 * the measurements) with the current thread's allocation counter.
 */
class PackedDeviceAllocationTest {
    private static final com.sun.management.ThreadMXBean THREADS =
            (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();

    @Test
    void theDeviceDataPathAllocatesNothingOverAHundredThousandRoundTrips() {
        long features = PackedRig.ALL_FEATURES | VirtioFeatures.bit(VirtioFeatures.IN_ORDER);
        try (PackedRig rig = new PackedRig(256, 1)) {
            PackedDriverQueue driver = rig.driver(0, features);
            PackedDeviceQueue device = rig.device(0, features);
            long control = THREADS.getCurrentThreadAllocatedBytes();
            byte[] probe = new byte[4096];
            assertTrue(THREADS.getCurrentThreadAllocatedBytes() - control >= probe.length, "the counter sees allocations");
            run(rig, driver, device, 200_000); // warm-up: let C2 compile and scalarise
            long allocated = run(rig, driver, device, 100_000);
            // A per-call allocation shows in every run; a one-time JIT event (code replaced mid-run,
            // seen under load) is not steady state, so up to two more runs may clear it.
            for (int retry = 0; retry < 2 && allocated > 0; retry++) {
                allocated = Math.min(allocated, run(rig, driver, device, 100_000));
            }
            assertEquals(0, allocated, "bytes allocated by the device calls");
            assertTrue(rig.guarded.canariesIntact());
        }
    }

    private static long run(PackedRig rig, PackedDriverQueue driver, PackedDeviceQueue device, int rounds) {
        long allocated = 0;
        int burst = 4;
        for (int round = 0; round < rounds; round += burst) {
            for (int i = 0; i < burst; i++) {
                driver.addReadable(rig.readable(0, i), 16);
                if ((round & 4) == 0) {
                    driver.addWritable(rig.writable(0, i), 48);
                    driver.submit();
                } else {
                    driver.addWritable(rig.writable(0, i), 24);
                    driver.addWritable(rig.writable(0, i) + 24, 24);
                    driver.submitIndirect();
                }
            }
            driver.publish();
            driver.needsKick();

            long before = THREADS.getCurrentThreadAllocatedBytes();
            device.disableNotification();
            int polled = 0;
            DescriptorChain chain;
            while ((chain = device.poll()) != null) {
                device.addUsed(chain, polled == 0 ? 10 : (int) chain.writableBytes());
                polled++;
            }
            device.publish();
            device.needsNotification();
            device.enableNotification();
            device.hasAvailable();
            allocated += THREADS.getCurrentThreadAllocatedBytes() - before;

            assertEquals(burst, polled);
            for (int i = 0; i < burst; i++) {
                assertTrue(driver.pollUsed() >= 0);
            }
        }
        assertNotNull(device);
        return allocated;
    }
}
