package io.vring.engine;

import io.vring.engine.chain.ChainReader;
import io.vring.engine.chain.ChainWriter;
import io.vring.engine.chain.DescriptorChain;
import io.vring.engine.inflight.InflightBuffer;
import io.vring.engine.memory.SharedMemory;
import io.vring.engine.notify.EventFd;
import io.vring.engine.notify.EventFdIdleStrategy;
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
 * when asked, allocates nothing on its own thread once warm, with inflight tracking on or off: not
 * in the duty cycle, not in the idle strategy (busy-spin, or sleeping on the kick eventfd), not in
 * the runner's loop. The agent reads
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
    /**
     * Idle cycles the warm-up needs too. The driver may keep the ring so full that the worker never
     * idles in its first chains; its first sleep would then fall in the window, and with it one-time
     * work that is not the steady state: the thread's Libc scratch (a ThreadLocal, an automatic arena,
     * three segments) and any method handle forms spun for a first call in this JVM.
     */
    private static final long WARM_UP_IDLE_CYCLES = 1_000;
    /** Chains between two checkpoints of the agent. */
    private static final long LAP = 10_000;
    /** Checkpoints the agent has room for: the window must be found within MAX_LAPS * LAP chains. */
    private static final int MAX_LAPS = 400;
    private static final long MEASURED = 200_000;
    /** Consecutive windows tried after the warm-up (see {@link #window}). */
    private static final int ATTEMPTS = 3;
    private static final long DEADLINE_SECONDS = 60;

    enum Idle { BUSY_SPIN, EVENTFD }

    /**
     * Whether the device queue records its chains in an inflight region (vhost-user INFLIGHT_SHMFD),
     * and whether it also marks a dirty log (live migration, with VHOST_VRING_F_LOG).
     */
    enum Inflight { UNTRACKED, TRACKED, TRACKED_AND_LOGGED }

    static Stream<Arguments> cases() {
        List<Arguments> all = new ArrayList<>();
        for (RingFixture.Kind kind : RingFixture.Kind.values()) {
            for (Idle idle : Idle.values()) {
                all.add(Arguments.of(kind, idle, Inflight.UNTRACKED));
            }
            // Tracking changes poll, addUsed and publish, not the idle path: one idle strategy is enough.
            all.add(Arguments.of(kind, Idle.BUSY_SPIN, Inflight.TRACKED));
            all.add(Arguments.of(kind, Idle.BUSY_SPIN, Inflight.TRACKED_AND_LOGGED));
        }
        return all.stream();
    }

    /**
     * The device worker. Every {@link #LAP} chains it records its thread's allocated bytes, chains
     * served and idle cycles (into arrays made up front); the test picks the window from those laps
     * afterwards. The lap branch is taken from the first lap on, so C2 compiles it as a branch: a
     * checkpoint taken for the first time inside the window would be an uncommon trap, and the
     * deoptimised duty cycle would run interpreted, allocating, inside the window it measures. For the
     * same reason the agent's call sites see one type in every case: the call notifier is an
     * {@link EventFd} (typed as such) even for busy-spin, and idle cycles are counted here rather than
     * by wrapping the strategy, whose type differs between cases. A call site compiled for the
     * previous case's type takes class-check traps, each finishing its duty cycle in the interpreter.
     */
    private static final class DeviceAgent implements Agent {
        private final DeviceQueue queue;
        private final EventFd call;
        private final MemorySegment scratch;
        private final ChainReader reader = new ChainReader();
        private final ChainWriter writer = new ChainWriter();
        final long[] lapBytes = new long[MAX_LAPS];
        final long[] lapServed = new long[MAX_LAPS];
        final long[] lapIdleCycles = new long[MAX_LAPS];
        private long served;
        private long nextLap = LAP;
        private int lap;
        /** Duty cycles that did no work: each is followed by one idle-strategy call with workCount 0. */
        private long idleCycles;
        /** Laps recorded; a volatile store after each lap's array stores, so the test reads whole laps. */
        volatile int laps;

        DeviceAgent(DeviceQueue queue, EventFd call, MemorySegment scratch) {
            this.queue = queue;
            this.call = call;
            this.scratch = scratch;
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
                if (served >= nextLap && lap < MAX_LAPS) {
                    nextLap += LAP;
                    lapBytes[lap] = THREADS.getCurrentThreadAllocatedBytes();
                    lapServed[lap] = served;
                    lapIdleCycles[lap] = idleCycles;
                    laps = ++lap;
                }
            } else {
                idleCycles++;
            }
            return n;
        }

        @Override
        public String roleName() {
            return "allocation-test-device";
        }
    }

    @ParameterizedTest(name = "{0} {1} {2}")
    @MethodSource("cases")
    void aDeviceWorkerAllocatesNothingOnItsThreadOnceWarm(RingFixture.Kind kind, Idle idle, Inflight inflight) throws Exception {
        long features = bit(VERSION_1) | bit(EVENT_IDX) | bit(INDIRECT_DESC)
                | (kind == RingFixture.Kind.PACKED ? bit(RING_PACKED) : 0);
        RingKind ringKind = RingKind.valueOf(kind.name());
        try (RingFixture ring = new RingFixture(kind, SIZE, features, (long) SIZE * 2 * PAYLOAD);
             SharedMemory region = SharedMemory.create("allocation-inflight", InflightBuffer.size(ringKind, 1, SIZE));
             SharedMemory log = SharedMemory.create("allocation-dirty-log", 1 << 20);
             EventFd kick = EventFd.create();
             EventFd call = EventFd.create()) {
            if (inflight != Inflight.UNTRACKED) {
                assertEquals(0, ring.device.trackInflight(InflightBuffer.of(ringKind, region.segment(), 1, SIZE), 0));
            }
            io.vring.engine.memory.DirtyLog dirty = io.vring.engine.memory.DirtyLog.over(log.segment());
            if (inflight == Inflight.TRACKED_AND_LOGGED) {
                // The log covers the fixture's GPAs (2^32 up) and the ring's log address next to them.
                ring.device.logDirty(dirty, RingFixture.BASE_GPA);
            }
            boolean eventfd = idle == Idle.EVENTFD;
            EventFdIdleStrategy sleeper = eventfd ? EventFdIdleStrategy.forDevice(ring.device, kick) : null;
            IdleStrategy strategy = eventfd ? sleeper : new BusySpinIdleStrategy();
            DeviceAgent agent = new DeviceAgent(ring.device, call, ring.arena.allocate(PAYLOAD, 8));
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
            int[] window = window(agent);
            assertTrue(window != null, "no window of " + MEASURED + " chains after the warm-up in " + agent.laps + " laps");
            int from = window[0];
            int to = window[1];
            long bytes = agent.lapBytes[to] - agent.lapBytes[from];
            long chains = agent.lapServed[to] - agent.lapServed[from];
            long idleCycles = agent.lapIdleCycles[to] - agent.lapIdleCycles[from];
            System.out.println("WorkerAllocationTest " + kind + " " + idle + " " + inflight + ": " + bytes + " bytes over " + chains
                    + " chains, " + idleCycles + " idle cycles (warm-up: " + agent.lapServed[from] + " chains, "
                    + agent.lapIdleCycles[from] + " idle cycles)");
            assertTrue(idleCycles > 0, "the idle strategy ran inside the window");
            if (inflight == Inflight.TRACKED_AND_LOGGED) {
                // The driver hands out its buffer slots last first, so the last slot's reply page is written.
                long lastReply = ring.dataGpa + (SIZE - 1) * 2L * PAYLOAD + PAYLOAD;
                assertTrue(dirty.isDirty(lastReply / io.vring.engine.memory.DirtyLog.PAGE_SIZE), "the log was marked");
                assertEquals(0, dirty.missedPages(), "every write was inside the log");
            }
            assertEquals(0, bytes, "bytes the device worker's thread allocated over " + chains + " chains");
        }
    }

    /**
     * The measured window: starting at the first lap where the warm-up is done (chains and idle
     * cycles), consecutive windows of at least {@link #MEASURED} chains; the first that allocated
     * nothing, or the last of {@link #ATTEMPTS} if none did (then the test fails with its figure).
     * Null while the laps recorded so far do not decide. A per-chain or per-sleep allocation shows in
     * every window; what a later window forgives is a one-time event such as the JIT replacing the
     * duty cycle's code mid-window (seen once in several runs under load), which is not steady state.
     */
    private static int[] window(DeviceAgent agent) {
        int laps = agent.laps;
        int from = 0;
        while (from < laps && !(agent.lapServed[from] >= WARM_UP && agent.lapIdleCycles[from] >= WARM_UP_IDLE_CYCLES)) {
            from++;
        }
        for (int attempt = 1; from < laps; attempt++) {
            int to = from + 1;
            while (to < laps && agent.lapServed[to] - agent.lapServed[from] < MEASURED) {
                to++;
            }
            if (to >= laps) {
                return null;
            }
            if (agent.lapBytes[to] == agent.lapBytes[from] || attempt == ATTEMPTS) {
                return new int[] {from, to};
            }
            from = to;
        }
        return null;
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
        while (window(agent) == null) {
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
