package io.vring.engine.split;

import io.vring.engine.IndirectArea;
import io.vring.engine.RingAddresses;
import io.vring.engine.chain.ChainReader;
import io.vring.engine.chain.ChainWriter;
import io.vring.engine.chain.DescriptorChain;
import io.vring.engine.memory.GuestMemory;
import io.vring.engine.memory.GuestRegion;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;

import static io.vring.engine.VirtioFeatures.EVENT_IDX;
import static io.vring.engine.VirtioFeatures.INDIRECT_DESC;
import static io.vring.engine.VirtioFeatures.IN_ORDER;
import static io.vring.engine.VirtioFeatures.bit;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The data path allocates nothing: after warm-up, 200k round trips in which the measured side's
 * calls (device: poll, ChainReader, ChainWriter, addUsed, publish, needsNotification,
 * enable/disableNotification; driver: add*, submit, submitIndirect, publish, needsKick, pollUsed,
 * usedLength, enable/disableUsedNotification) allocate 0 bytes on this thread. The other side
 * prepares or drains the ring between measured bursts, outside the measurement.
 */
class SplitAllocationTest {
    private static final com.sun.management.ThreadMXBean THREADS =
            (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
    private static final long GPA = 0x100000;
    private static final int N = 256;
    private static final int BURST = N / 2;
    private static final int ROUND_TRIPS = 200_000;
    private static final int WARM_UP = 300_000;
    private static final long BUF = GPA + 0x20000;

    private Arena arena;
    private GuestMemory memory;
    private SplitDriverQueue driver;
    private SplitDeviceQueue device;
    private final ChainReader reader = new ChainReader();
    private final ChainWriter writer = new ChainWriter();
    private final byte[] heapBuffer = new byte[64];
    private MemorySegment nativeBuffer;
    private long sink;

    private void open(long features) {
        arena = Arena.ofShared();
        MemorySegment seg = arena.allocate(1 << 20, 4096);
        nativeBuffer = arena.allocate(64, 8);
        memory = GuestMemory.of(new GuestRegion(GPA, seg.byteSize(), GPA, 0, seg));
        RingAddresses rings = new RingAddresses(GPA, GPA + 0x1000, GPA + 0x2000);
        driver = new SplitDriverQueue("alloc driver", memory, N, rings, features, new IndirectArea(GPA + 0x10000, 4));
        device = new SplitDeviceQueue("alloc device", memory, N, rings, features);
    }

    @AfterEach
    void close() {
        if (arena != null) {
            arena.close();
        }
    }

    private static long allocated() {
        return THREADS.getCurrentThreadAllocatedBytes();
    }

    // ---- the two halves of a round trip ----

    private void driverOffersBurst(int base) {
        for (int i = 0; i < BURST; i++) {
            long buf = BUF + 128L * i;
            driver.addReadable(buf, 32);
            driver.addWritable(buf + 64, 32);
            int id = (base + i) % 4 == 0 ? driver.submitIndirect() : driver.submit();
            if (id < 0) {
                throw new AssertionError("ring full");
            }
        }
        driver.publish();
        if (driver.needsKick()) {
            sink++;
        }
    }

    private void deviceServesBurst() {
        device.disableNotification();
        DescriptorChain chain;
        while ((chain = device.poll()) != null) {
            reader.reset(chain).read(heapBuffer, 0, 16);
            reader.read(nativeBuffer, 0, 16);
            writer.reset(chain).write(heapBuffer, 0, 16);
            writer.write(nativeBuffer, 0, 8);
            device.addUsed(chain, (int) writer.written());
        }
        device.publish();
        if (device.needsNotification()) {
            sink++;
        }
        if (device.enableNotification()) {
            sink++;
        }
    }

    private void driverCollectsBurst() {
        driver.disableUsedNotification();
        int id;
        while ((id = driver.pollUsed()) != -1) {
            sink += id + driver.usedLength();
        }
        if (driver.enableUsedNotification()) {
            sink++;
        }
        sink += driver.outstanding() + driver.freeDescriptors();
    }

    private void roundTrips(int count) {
        for (int done = 0; done < count; done += BURST) {
            driverOffersBurst(done);
            deviceServesBurst();
            driverCollectsBurst();
        }
    }

    private static final long[] FEATURE_SETS = {
            bit(INDIRECT_DESC),
            bit(INDIRECT_DESC) | bit(EVENT_IDX),
            bit(INDIRECT_DESC) | bit(EVENT_IDX) | bit(IN_ORDER),
    };

    @ParameterizedTest(name = "feature set {0}")
    @ValueSource(ints = {0, 1, 2})
    void deviceCallsAllocateNothingAfterWarmUp(int featureSet) {
        open(FEATURE_SETS[featureSet]);
        roundTrips(WARM_UP);
        long total = steadyState(this::deviceBytesOverRoundTrips);
        assertFalse(device.isBroken(), device.toString());
        assertEquals(0, total, "bytes the device allocated in " + ROUND_TRIPS + " round trips");
    }

    @ParameterizedTest(name = "feature set {0}")
    @ValueSource(ints = {0, 1, 2})
    void driverCallsAllocateNothingAfterWarmUp(int featureSet) {
        open(FEATURE_SETS[featureSet]);
        roundTrips(WARM_UP);
        long total = steadyState(this::driverBytesOverRoundTrips);
        assertFalse(driver.isBroken(), driver.toString());
        assertEquals(0, total, "bytes the driver allocated in " + ROUND_TRIPS + " round trips");
    }

    /**
     * The smallest figure of up to three consecutive measured runs (the first 0 ends the search). A
     * per-call allocation shows in every run; a one-time JIT event (code replaced mid-run, seen under
     * load) is not steady state.
     */
    private static long steadyState(java.util.function.LongSupplier measuredRun) {
        long least = Long.MAX_VALUE;
        for (int attempt = 0; attempt < 3 && least > 0; attempt++) {
            least = Math.min(least, measuredRun.getAsLong());
        }
        return least;
    }

    private long deviceBytesOverRoundTrips() {
        long overhead = measurementOverhead();
        long total = 0;
        for (int done = 0; done < ROUND_TRIPS; done += BURST) {
            driverOffersBurst(done);
            long before = allocated();
            deviceServesBurst();
            total += allocated() - before - overhead;
            driverCollectsBurst();
        }
        return total;
    }

    private long driverBytesOverRoundTrips() {
        long overhead = measurementOverhead();
        long total = 0;
        for (int done = 0; done < ROUND_TRIPS; done += BURST) {
            long before = allocated();
            driverOffersBurst(done);
            total += allocated() - before - overhead;
            deviceServesBurst();
            before = allocated();
            driverCollectsBurst();
            total += allocated() - before - overhead;
        }
        return total;
    }

    /** What two back-to-back reads of the counter cost (expected 0). */
    private static long measurementOverhead() {
        long min = Long.MAX_VALUE;
        for (int i = 0; i < 1000; i++) {
            long before = allocated();
            min = Math.min(min, allocated() - before);
        }
        return min;
    }
}
