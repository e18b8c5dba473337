package io.vring.engine;

import io.vring.engine.chain.ChainReader;
import io.vring.engine.chain.ChainWriter;
import io.vring.engine.chain.DescriptorChain;
import io.vring.engine.memory.GuestMemory;
import io.vring.engine.memory.GuestRegion;
import io.vring.engine.notify.EventFd;
import io.vring.engine.packed.PackedLayout;
import io.vring.engine.split.SplitLayout;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import static io.vring.engine.VirtioFeatures.EVENT_IDX;
import static io.vring.engine.VirtioFeatures.RING_PACKED;
import static io.vring.engine.VirtioFeatures.VERSION_1;
import static io.vring.engine.VirtioFeatures.bit;

/**
 * The lost-wakeup hunt: a driver thread and a device thread on one small queue, each SLEEPING on an
 * eventfd between bursts with the real handshake, and a watchdog that calls a stall what the race of
 * reference §4.3 produces: neither side moves for {@link #STALL_MILLIS} while chains are outstanding.
 *
 * <p>Device: poll until empty (or a random batch), publish, {@code needsNotification()} → call;
 * with nothing to do, {@code enableNotification()} (enable, fence, re-check) and only then await the
 * kick. Driver: submit a random batch, publish, {@code needsKick()} → kick; to wait for used chains,
 * {@code enableUsedNotification()} and only then await the call. Every await is capped at
 * {@link #AWAIT_MILLIS}, far above the stall threshold, so a lost wake-up shows as a stall instead of
 * being papered over by a short timeout (as EventFdIdleStrategy's 100 ms default would).
 *
 * <p>On a stall the watchdog records both queues' state and the raw index/flags/event words read from
 * the shared ring, then rescues both sides (signals both eventfds) so the run ends and can report.
 * Shared by {@code NotificationStressTest} (fences in) and {@code NoFenceStressMain} (a child JVM with
 * {@code -Dvring.test.removeFences=true}).
 */
final class NotificationStress {
    /** A sleep longer than any honest wait: only a lost wake-up (or the rescue) ends it. */
    static final long AWAIT_MILLIS = 10_000;
    static final long WATCHDOG_PERIOD_MILLIS = 200;
    static final long STALL_MILLIS = 1_000;
    /** After the run's time is up, how long the two threads get to finish before the run is a failure. */
    private static final long DRAIN_MILLIS = 20_000;
    private static final long BASE_GPA = 0x1_0000_0000L;
    /** Per in-flight chain: 64 bytes the device reads, 64 it writes. */
    private static final int SLOT_BYTES = 128;
    private static final int REPLY_OFFSET = 64;
    private static final ValueLayout.OfShort LE_U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong LE_U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** How the two sides suppress each other's notifications. */
    enum Suppression { FLAGS, EVENT_IDX }

    /** One configuration of the stress: ring kind, suppression scheme, queue size. */
    record Variant(RingKind kind, Suppression suppression, int size) {
        long features() {
            long f = bit(VERSION_1);
            if (suppression == Suppression.EVENT_IDX) {
                f |= bit(EVENT_IDX);
            }
            if (kind == RingKind.PACKED) {
                f |= bit(RING_PACKED);
            }
            return f;
        }

        @Override
        public String toString() {
            return kind + "/" + suppression + "/size" + size;
        }
    }

    /**
     * What one run saw.
     *
     * @param chains       round trips completed (driver collected and checked the reply)
     * @param deviceSleeps times the device awaited the kick eventfd (the handshake found nothing)
     * @param driverSleeps times the driver awaited the call eventfd
     * @param kicks        kicks the driver sent ({@code needsKick()} true)
     * @param calls        calls the device sent ({@code needsNotification()} true)
     * @param stalls       one dump per stall the watchdog rescued
     * @param failure      an exception from either side, or null
     */
    record Result(Variant variant, long seed, long chains, long deviceSleeps, long driverSleeps, long kicks, long calls,
                  List<String> stalls, Throwable failure) {
        String summary() {
            return "STRESS " + variant + " seed=" + seed + " chains=" + chains + " deviceSleeps=" + deviceSleeps
                    + " driverSleeps=" + driverSleeps + " kicks=" + kicks + " calls=" + calls + " stalls=" + stalls.size()
                    + (failure == null ? "" : " failure=" + failure);
        }
    }

    /** Both ring kinds, both suppression schemes, a tiny ring and a small one (packed: an odd size too). */
    static List<Variant> variants() {
        List<Variant> all = new ArrayList<>();
        for (RingKind kind : RingKind.values()) {
            for (Suppression s : Suppression.values()) {
                for (int size : kind == RingKind.SPLIT ? new int[] {4, 16} : new int[] {5, 16}) {
                    all.add(new Variant(kind, s, size));
                }
            }
        }
        return all;
    }

    /** Progress and state the two threads publish for the watchdog. */
    private static final class Shared {
        final AtomicLong served = new AtomicLong();
        final AtomicLong completed = new AtomicLong();
        final AtomicLong outstanding = new AtomicLong();
        volatile boolean stop;
        volatile boolean driverDone;
        volatile boolean deviceAsleep;
        volatile boolean driverAsleep;
        final AtomicReference<Throwable> failure = new AtomicReference<>();
        long deviceSleeps;
        long driverSleeps;
        long kicks;
        long calls;
    }

    /** Runs {@code variant} for {@code millis}, then lets the in-flight chains drain, and reports. */
    static Result run(Variant variant, long seed, long millis) {
        return run(variant, seed, millis, false);
    }

    /**
     * As {@link #run(Variant, long, long)}; with {@code dropCalls} the device never signals the call
     * eventfd (a lost wake-up on purpose), which shows that the watchdog catches one.
     */
    static Result run(Variant variant, long seed, long millis, boolean dropCalls) {
        int size = variant.size();
        RingKind kind = variant.kind();
        RingPlacement plan = RingPlacement.plan(kind, size, BASE_GPA, 0, (long) size * SLOT_BYTES);
        Arena arena = Arena.ofShared();
        EventFd kick = EventFd.create();
        EventFd call = EventFd.create();
        boolean joined = false;
        try {
            MemorySegment ring = arena.allocate(plan.totalBytes(), 4096);
            GuestMemory memory = GuestMemory.of(new GuestRegion(BASE_GPA, plan.totalBytes(), BASE_GPA, 0, ring));
            DriverQueue driver = kind.driver("stress driver", memory, size, plan.rings(), variant.features(), null);
            DeviceQueue device = kind.device("stress device", memory, size, plan.rings(), variant.features());
            MemorySegment scratch = arena.allocate(64, 8);
            Shared shared = new Shared();
            Thread deviceThread = new Thread(guarded(shared, kick, call,
                    () -> runDevice(device, kick, call, scratch, shared, seed, dropCalls)), "stress-device");
            Thread driverThread = new Thread(guarded(shared, kick, call,
                    () -> runDriver(driver, kick, call, ring, plan.dataGpa(), size, shared, seed)), "stress-driver");
            deviceThread.setDaemon(true);
            driverThread.setDaemon(true);
            List<String> stalls = new ArrayList<>();
            deviceThread.start();
            driverThread.start();
            watch(variant, plan, ring, device, driver, kick, call, shared, millis, stalls, deviceThread, driverThread);
            joined = !deviceThread.isAlive() && !driverThread.isAlive();
            if (!joined) {
                shared.failure.compareAndSet(null, new AssertionError("threads did not finish " + DRAIN_MILLIS
                        + " ms after the run: " + dump(variant, plan, ring, device, driver, shared)));
            }
            return new Result(variant, seed, shared.completed.get(), shared.deviceSleeps, shared.driverSleeps,
                    shared.kicks, shared.calls, stalls, shared.failure.get());
        } finally {
            if (joined) { // a thread still inside the ring would fault on a closed arena: leak it instead
                kick.close();
                call.close();
                arena.close();
            }
        }
    }

    private static Runnable guarded(Shared shared, EventFd kick, EventFd call, Runnable body) {
        return () -> {
            try {
                body.run();
            } catch (Throwable t) {
                shared.failure.compareAndSet(null, t);
                shared.stop = true;
                shared.driverDone = true;
                kick.signal();
                call.signal();
            }
        };
    }

    private static void watch(Variant variant, RingPlacement plan, MemorySegment ring, DeviceQueue device,
                              DriverQueue driver, EventFd kick, EventFd call, Shared shared, long millis,
                              List<String> stalls, Thread deviceThread, Thread driverThread) {
        long start = System.nanoTime();
        long deadline = start + TimeUnit.MILLISECONDS.toNanos(millis);
        long giveUp = deadline + TimeUnit.MILLISECONDS.toNanos(DRAIN_MILLIS);
        long lastServed = -1;
        long lastCompleted = -1;
        long lastProgress = start;
        while (deviceThread.isAlive() || driverThread.isAlive()) {
            try {
                driverThread.join(WATCHDOG_PERIOD_MILLIS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                shared.stop = true;
            }
            long now = System.nanoTime();
            if (now >= deadline) {
                shared.stop = true;
            }
            if (now >= giveUp) {
                kick.signal();
                call.signal();
                return;
            }
            long served = shared.served.get();
            long completed = shared.completed.get();
            if (served != lastServed || completed != lastCompleted) {
                lastServed = served;
                lastCompleted = completed;
                lastProgress = now;
                continue;
            }
            if (shared.outstanding.get() > 0 && now - lastProgress >= TimeUnit.MILLISECONDS.toNanos(STALL_MILLIS)) {
                String state = dump(variant, plan, ring, device, driver, shared);
                stalls.add("stall " + (stalls.size() + 1) + " at " + TimeUnit.NANOSECONDS.toMillis(now - start)
                        + " ms, no progress for " + TimeUnit.NANOSECONDS.toMillis(now - lastProgress) + " ms: " + state);
                kick.signal(); // the rescue: wake both sleepers so the run can go on and end
                call.signal();
                lastProgress = now;
            }
        }
    }

    /**
     * Both queues' own view and the raw words of the shared ring. Read from the watchdog thread: the
     * queues' private fields are read racily, which is good enough for a stalled (quiet) ring.
     */
    static String dump(Variant variant, RingPlacement plan, MemorySegment ring, DeviceQueue device,
                       DriverQueue driver, Shared shared) {
        StringBuilder s = new StringBuilder();
        s.append(variant).append(" served=").append(shared.served.get()).append(" completed=")
                .append(shared.completed.get()).append(" outstanding=").append(shared.outstanding.get())
                .append(" deviceAsleep=").append(shared.deviceAsleep).append(" driverAsleep=").append(shared.driverAsleep)
                .append("\n  device: ").append(device).append("\n  driver: ").append(driver).append("\n  ring: ");
        int size = variant.size();
        RingAddresses r = plan.rings();
        if (variant.kind() == RingKind.SPLIT) {
            long avail = r.driverArea() - BASE_GPA;
            long used = r.deviceArea() - BASE_GPA;
            s.append("avail.flags=").append(u16(ring, avail + SplitLayout.AVAIL_FLAGS))
                    .append(" avail.idx=").append(u16(ring, avail + SplitLayout.AVAIL_IDX))
                    .append(" used_event=").append(u16(ring, avail + SplitLayout.usedEventOffset(size)))
                    .append(" used.flags=").append(u16(ring, used + SplitLayout.USED_FLAGS))
                    .append(" used.idx=").append(u16(ring, used + SplitLayout.USED_IDX))
                    .append(" avail_event=").append(u16(ring, used + SplitLayout.availEventOffset(size)));
        } else {
            long driverEvent = r.driverArea() - BASE_GPA;
            long deviceEvent = r.deviceArea() - BASE_GPA;
            s.append("driverEvent(off_wrap=0x").append(Integer.toHexString(u16(ring, driverEvent + PackedLayout.EVENT_OFF_WRAP)))
                    .append(", flags=").append(u16(ring, driverEvent + PackedLayout.EVENT_FLAGS))
                    .append(") deviceEvent(off_wrap=0x").append(Integer.toHexString(u16(ring, deviceEvent + PackedLayout.EVENT_OFF_WRAP)))
                    .append(", flags=").append(u16(ring, deviceEvent + PackedLayout.EVENT_FLAGS)).append(") slot flags [");
            long desc = r.descriptorArea() - BASE_GPA;
            for (int slot = 0; slot < size; slot++) {
                s.append(slot == 0 ? "" : " ").append("0x")
                        .append(Integer.toHexString(u16(ring, desc + PackedLayout.descriptorOffset(slot) + PackedLayout.DESC_FLAGS)));
            }
            s.append(']');
        }
        return s.toString();
    }

    private static int u16(MemorySegment ring, long offset) {
        return Short.toUnsignedInt(ring.get(LE_U16, offset));
    }

    // ---- the device ----

    private static void runDevice(DeviceQueue q, EventFd kick, EventFd call, MemorySegment scratch, Shared shared, long seed,
                                  boolean dropCalls) {
        SplittableRandom random = new SplittableRandom(seed ^ 0x9E3779B97F4A7C15L);
        ChainReader reader = new ChainReader();
        ChainWriter writer = new ChainWriter();
        long expect = 0;
        while (!shared.driverDone) {
            int limit = random.nextInt(1, q.size() + 1);
            int n = 0;
            DescriptorChain c;
            while (n < limit && (c = q.poll()) != null) {
                long got = reader.reset(c).read(scratch, 0, 64);
                if (got < 8) {
                    throw new AssertionError("chain " + expect + " has " + got + " readable bytes");
                }
                long seq = scratch.get(LE_U64, 0);
                if (seq != expect) {
                    throw new AssertionError("device got seq " + seq + ", expected " + expect + ": " + q);
                }
                scratch.set(LE_U64, 0, ~seq);
                writer.reset(c).write(scratch, 0, 8);
                q.addUsed(c, 8);
                expect++;
                n++;
            }
            if (q.isBroken()) {
                throw new AssertionError("device queue broke: " + q.brokenReason());
            }
            if (n > 0) {
                q.publish();
                shared.served.addAndGet(n);
                if (q.needsNotification()) {
                    shared.calls++;
                    if (!dropCalls) {
                        call.signal();
                    }
                }
                continue;
            }
            // Nothing to do: ask for kicks, fence, re-check; sleep only if there is still nothing.
            if (!q.enableNotification()) {
                shared.deviceSleeps++;
                shared.deviceAsleep = true;
                kick.await(AWAIT_MILLIS);
                shared.deviceAsleep = false;
            }
            q.disableNotification();
        }
    }

    // ---- the driver ----

    private static void runDriver(DriverQueue q, EventFd kick, EventFd call, MemorySegment ring, long dataGpa, int size,
                                  Shared shared, long seed) {
        SplittableRandom random = new SplittableRandom(seed);
        int[] freeSlots = new int[size];
        int free = size;
        for (int i = 0; i < size; i++) {
            freeSlots[i] = i;
        }
        int[] slotOfId = new int[size];
        long[] seqOfId = new long[size];
        long nextSeq = 0;
        long collectedSeq = 0;
        int outstanding = 0;
        while (!shared.stop || outstanding > 0) {
            if (!shared.stop) {
                int batch = random.nextInt(1, size + 1);
                int added = 0;
                for (int b = 0; b < batch && free > 0; b++) {
                    int slot = freeSlots[free - 1];
                    long gpa = dataGpa + (long) slot * SLOT_BYTES;
                    ring.set(LE_U64, gpa - BASE_GPA, nextSeq);
                    q.addReadable(gpa, random.nextInt(8, 65));
                    q.addWritable(gpa + REPLY_OFFSET, 64);
                    int id = q.submit();
                    if (id < 0) {
                        break; // no room: collect first
                    }
                    free--;
                    slotOfId[id] = slot;
                    seqOfId[id] = nextSeq++;
                    added++;
                }
                if (added > 0) {
                    outstanding += added;
                    shared.outstanding.addAndGet(added);
                    q.publish();
                    if (q.needsKick()) {
                        shared.kicks++;
                        kick.signal();
                    }
                }
            }
            int collected = 0;
            int id;
            while ((id = q.pollUsed()) >= 0) {
                long seq = seqOfId[id];
                if (seq != collectedSeq) {
                    throw new AssertionError("driver collected seq " + seq + ", expected " + collectedSeq + ": " + q);
                }
                long reply = ring.get(LE_U64, dataGpa + (long) slotOfId[id] * SLOT_BYTES + REPLY_OFFSET - BASE_GPA);
                if (q.usedLength() != 8 || reply != ~seq) {
                    throw new AssertionError("seq " + seq + ": used length " + q.usedLength() + ", reply " + ~reply);
                }
                freeSlots[free++] = slotOfId[id];
                collectedSeq++;
                collected++;
            }
            if (collected > 0) {
                outstanding -= collected;
                shared.outstanding.addAndGet(-collected);
                shared.completed.addAndGet(collected);
            }
            // Wait for used chains when the ring is full, when draining, and at random otherwise, so
            // the driver sleeps often while the device is mid-burst.
            if (outstanding > 0 && collected == 0 && (free == 0 || shared.stop || random.nextInt(2) == 0)) {
                if (!q.enableUsedNotification()) {
                    shared.driverSleeps++;
                    shared.driverAsleep = true;
                    call.await(AWAIT_MILLIS);
                    shared.driverAsleep = false;
                }
                q.disableUsedNotification();
            }
        }
        shared.driverDone = true;
        kick.signal(); // let the device see driverDone
    }

    private NotificationStress() {
    }
}
