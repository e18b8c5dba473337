package io.vring.engine;

import io.vring.engine.chain.ChainReader;
import io.vring.engine.chain.ChainWriter;
import io.vring.engine.chain.DescriptorChain;
import io.vring.engine.notify.EventFd;
import io.vring.engine.notify.EventFdIdleStrategy;
import io.vring.engine.notify.Notifier;
import org.agrona.concurrent.Agent;
import org.agrona.concurrent.AgentRunner;
import org.agrona.concurrent.BusySpinIdleStrategy;
import org.agrona.concurrent.IdleStrategy;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.management.ManagementFactory;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Stream;

import static io.vring.engine.VirtioFeatures.EVENT_IDX;
import static io.vring.engine.VirtioFeatures.INDIRECT_DESC;
import static io.vring.engine.VirtioFeatures.RING_PACKED;
import static io.vring.engine.VirtioFeatures.VERSION_1;
import static io.vring.engine.VirtioFeatures.bit;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * A device worker as back-ends run one, an Agrona {@link Agent} on an {@link AgentRunner} whose
 * duty cycle polls, reads with ChainReader, writes with ChainWriter, adds used, publishes and calls
 * when asked, allocates nothing on its own thread once warm: not in the duty cycle, not in the idle
 * strategy (busy-spin, or sleeping on the kick eventfd), not in the runner's loop. The agent reads
 * its thread's allocated bytes at two checkpoints, {@link #MEASURED} chains apart; the window holds
 * thousands of sleeps, a path far colder than the chains (which is why the eventfd downcalls must not
 * allocate even before C2 compiles them: see {@code Libc}).
 */
class WorkerAllocationTest {
    private static final com.sun.management.ThreadMXBean THREADS =
            (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
    private static final int SIZE = 256;
    private static final int PAYLOAD = 64;
    private static final long WARM_UP = 300_000;
    private static final long MEASURED = 200_000;
    private static final long DEADLINE_SECONDS = 60;

    enum Idle { BUSY_SPIN, EVENTFD }

    static Stream<Arguments> cases() {
        List<Arguments> all = new ArrayList<>();
        for (RingFixture.Kind kind : RingFixture.Kind.values()) {
            for (Idle idle : Idle.values()) {
                all.add(Arguments.of(kind, idle));
            }
        }
        return all.stream();
    }

    /** Counts the idle cycles (a duty cycle that did no work) of the strategy it wraps; on the worker's thread. */
    private static final class CountingIdleStrategy implements IdleStrategy {
        private final IdleStrategy delegate;
        long idleCycles;

        CountingIdleStrategy(IdleStrategy delegate) {
            this.delegate = delegate;
        }

        @Override
        public void idle(int workCount) {
            if (workCount <= 0) {
                idleCycles++;
            }
            delegate.idle(workCount);
        }

        @Override
        public void idle() {
            idleCycles++;
            delegate.idle();
        }

        @Override
        public void reset() {
            delegate.reset();
        }

        @Override
        public String alias() {
            return delegate.alias();
        }
    }

    /** The device worker; its counters are its own, what the test reads is published through volatiles. */
    private static final class DeviceAgent implements Agent {
        private final DeviceQueue queue;
        private final Notifier call;
        private final MemorySegment scratch;
        private final CountingIdleStrategy idle;
        private final ChainReader reader = new ChainReader();
        private final ChainWriter writer = new ChainWriter();
        private long served;
        private long startBytes = -1;
        private long startServed;
        private long startIdleCycles;
        volatile long measuredBytes = -1;
        volatile long measuredChains;
        volatile long measuredIdleCycles;

        DeviceAgent(DeviceQueue queue, Notifier call, MemorySegment scratch, CountingIdleStrategy idle) {
            this.queue = queue;
            this.call = call;
            this.scratch = scratch;
            this.idle = idle;
        }

        @Override
        public void onStart() {
            THREADS.getCurrentThreadAllocatedBytes(); // any first-call set-up happens here, not in the window
        }

        @Override
        public int doWork() {
            DeviceQueue q = queue;
            int n = 0;
            DescriptorChain c;
            while ((c = q.poll()) != null) {
                long got = reader.reset(c).read(scratch, 0, PAYLOAD);
                for (long i = 0; i < got; i++) {
                    scratch.set(ValueLayout.JAVA_BYTE, i, (byte) ~scratch.get(ValueLayout.JAVA_BYTE, i));
                }
                long wrote = writer.reset(c).write(scratch, 0, got);
                q.addUsed(c, (int) wrote);
                n++;
            }
            if (n > 0) {
                q.publish();
                if (q.needsNotification()) {
                    call.signal();
                }
                served += n;
                if (startBytes < 0 && served >= WARM_UP) {
                    startServed = served;
                    startIdleCycles = idle.idleCycles;
                    startBytes = THREADS.getCurrentThreadAllocatedBytes();
                } else if (startBytes >= 0 && measuredBytes < 0 && served - startServed >= MEASURED) {
                    long end = THREADS.getCurrentThreadAllocatedBytes();
                    measuredChains = served - startServed;
                    measuredIdleCycles = idle.idleCycles - startIdleCycles;
                    measuredBytes = end - startBytes;
                }
            }
            return n;
        }

        @Override
        public String roleName() {
            return "allocation-test-device";
        }
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("cases")
    void aDeviceWorkerAllocatesNothingOnItsThreadOnceWarm(RingFixture.Kind kind, Idle idle) throws Exception {
        long features = bit(VERSION_1) | bit(EVENT_IDX) | bit(INDIRECT_DESC)
                | (kind == RingFixture.Kind.PACKED ? bit(RING_PACKED) : 0);
        try (RingFixture ring = new RingFixture(kind, SIZE, features, (long) SIZE * 2 * PAYLOAD);
             EventFd kick = EventFd.create();
             EventFd call = EventFd.create()) {
            boolean eventfd = idle == Idle.EVENTFD;
            EventFdIdleStrategy sleeper = eventfd ? EventFdIdleStrategy.forDevice(ring.device, kick) : null;
            CountingIdleStrategy strategy = new CountingIdleStrategy(eventfd ? sleeper : new BusySpinIdleStrategy());
            DeviceAgent agent = new DeviceAgent(ring.device, eventfd ? call : Notifier.NONE, ring.arena.allocate(PAYLOAD, 8),
                    strategy);
            AtomicReference<Throwable> error = new AtomicReference<>();
            AgentRunner runner = new AgentRunner(strategy, t -> error.compareAndSet(null, t), null, agent);
            AgentRunner.startOnThread(runner);
            try {
                drive(ring, kick, eventfd, agent, error);
            } finally {
                if (sleeper != null) {
                    sleeper.wakeUp();
                }
                runner.close();
            }
            assertNull(error.get(), () -> "the agent failed: " + error.get());
            System.out.println("WorkerAllocationTest " + kind + " " + idle + ": " + agent.measuredBytes + " bytes over "
                    + agent.measuredChains + " chains, " + agent.measuredIdleCycles + " idle cycles");
            assertTrue(agent.measuredChains >= 100_000, "measured " + agent.measuredChains + " chains");
            assertTrue(agent.measuredIdleCycles > 0, "the idle strategy ran inside the window");
            assertEquals(0, agent.measuredBytes, "bytes the device worker's thread allocated over "
                    + agent.measuredChains + " chains");
        }
    }

    /** The driver, on the test thread (not measured): keeps the ring full and collects replies. */
    private static void drive(RingFixture ring, EventFd kick, boolean eventfd, DeviceAgent agent,
                              AtomicReference<Throwable> error) {
        DriverQueue q = ring.driver;
        int[] freeSlots = new int[SIZE];
        int free = SIZE;
        for (int i = 0; i < SIZE; i++) {
            freeSlots[i] = i;
        }
        int[] slotOfId = new int[SIZE];
        long submitted = 0;
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(DEADLINE_SECONDS);
        while (agent.measuredBytes < 0) {
            int added = 0;
            while (free > 0 && added < 32) {
                int slot = freeSlots[free - 1];
                long gpa = ring.dataGpa + (long) slot * 2 * PAYLOAD;
                ring.segment.set(ValueLayout.JAVA_LONG_UNALIGNED, ring.offsetOf(gpa), submitted);
                q.addReadable(gpa, PAYLOAD);
                q.addWritable(gpa + PAYLOAD, PAYLOAD);
                int id = submitted % 4 == 0 ? q.submitIndirect() : q.submit();
                if (id < 0) {
                    break;
                }
                free--;
                slotOfId[id] = slot;
                submitted++;
                added++;
            }
            if (added > 0) {
                q.publish();
                if (q.needsKick() && eventfd) {
                    kick.signal();
                }
            }
            int id;
            while ((id = q.pollUsed()) >= 0) {
                assertEquals(PAYLOAD, q.usedLength());
                freeSlots[free++] = slotOfId[id];
            }
            if (error.get() != null) {
                fail("the agent failed", error.get());
            }
            if (System.nanoTime() > deadline) {
                fail("the agent served too slowly: " + ring.device + " / " + q);
            }
        }
    }
}
