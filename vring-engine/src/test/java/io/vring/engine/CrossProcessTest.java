package io.vring.engine;

import io.vring.engine.memory.SharedMemory;
import io.vring.engine.notify.EventFd;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static io.vring.engine.CrossProcessDeviceMain.PAYLOAD;
import static io.vring.engine.VirtioFeatures.EVENT_IDX;
import static io.vring.engine.VirtioFeatures.RING_PACKED;
import static io.vring.engine.VirtioFeatures.VERSION_1;
import static io.vring.engine.VirtioFeatures.bit;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The driver in this JVM, the device in another ({@link CrossProcessDeviceMain}), one queue in a memfd
 * the child maps through {@code /proc/<pid>/fd}: every one of 200,000 chains comes back with the reply
 * the device derived from its payload. Busy-polled, and sleeping on eventfds the child duplicated from
 * this process (pidfd_getfd), where neither side may time out of a sleep with work waiting. The child
 * exits by itself when done, and is killed if the test runs out of time.
 */
class CrossProcessTest {
    private static final int CHAINS = 200_000;
    private static final int SIZE = 128;
    private static final int SLOT_BYTES = 2 * PAYLOAD;
    private static final long DEADLINE_SECONDS = 90;
    private static final long AWAIT_MILLIS = 1_000;
    /** How late a notification may be (the peer between publish and signal, descheduled) before it counts as lost. */
    static final long LATE_MILLIS = 5_000;

    enum Notification { BUSY_POLL, EVENTFD }

    static Stream<Arguments> cases() {
        List<Arguments> all = new ArrayList<>();
        for (RingKind kind : RingKind.values()) {
            for (Notification n : Notification.values()) {
                all.add(Arguments.of(kind, n));
            }
        }
        return all.stream();
    }

    /** Payload byte {@code i} of the chain with sequence number {@code seq}. */
    private static byte payload(long seq, int i) {
        return (byte) (((seq * 0x9E3779B97F4A7C15L) >>> ((i & 7) << 3)) + i);
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("cases")
    void aDeviceInAnotherProcessAnswersEveryChainThroughTheSharedMemfd(RingKind kind, Notification mode) throws Exception {
        long seed = Long.getLong("vring.stress.seed", System.nanoTime());
        System.out.println("CrossProcessTest " + kind + " " + mode + " seed " + seed);
        SplittableRandom random = new SplittableRandom(seed);
        long features = bit(VERSION_1) | bit(EVENT_IDX) | (kind == RingKind.PACKED ? bit(RING_PACKED) : 0);
        RingPlacement plan = RingPlacement.plan(kind, SIZE, 0, 0, (long) SIZE * SLOT_BYTES);
        boolean eventfds = mode == Notification.EVENTFD;
        try (SharedMemory memory = SharedMemory.create("vring-cross-process", plan.totalBytes());
             EventFd kick = EventFd.create();
             EventFd call = EventFd.create()) {
            DriverQueue q = kind.driver("parent driver", memory.guestMemory(0), SIZE, plan.rings(), features, null);
            RingAddresses r = plan.rings();
            List<String> args = List.of(kind.name(), Integer.toString(SIZE), Long.toString(ProcessHandle.current().pid()),
                    Integer.toString(memory.fd()), Long.toString(plan.totalBytes()), Long.toString(r.descriptorArea()),
                    Long.toString(r.driverArea()), Long.toString(r.deviceArea()), Long.toString(features),
                    Integer.toString(CHAINS), Integer.toString(eventfds ? kick.fd() : -1), Integer.toString(eventfds ? call.fd() : -1));
            try (ChildJvm child = ChildJvm.start(CrossProcessDeviceMain.class, List.of(), args)) {
                MemorySegment mem = memory.segment();
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(DEADLINE_SECONDS);
                int[] freeSlots = new int[SIZE];
                int free = SIZE;
                for (int i = 0; i < SIZE; i++) {
                    freeSlots[i] = i;
                }
                int[] slotOfId = new int[SIZE];
                long[] seqOfId = new long[SIZE];
                long nextSeq = 0;
                long completed = 0;
                long lostCalls = 0;
                long sleeps = 0;
                long kicks = 0;
                while (completed < CHAINS) {
                    int batch = random.nextInt(1, 33);
                    int added = 0;
                    for (int b = 0; b < batch && free > 0 && nextSeq < CHAINS; b++) {
                        int slot = freeSlots[free - 1];
                        long gpa = plan.dataGpa() + (long) slot * SLOT_BYTES;
                        for (int i = 0; i < PAYLOAD; i++) {
                            mem.set(ValueLayout.JAVA_BYTE, gpa + i, payload(nextSeq, i));
                        }
                        q.addReadable(gpa, PAYLOAD);
                        q.addWritable(gpa + PAYLOAD, PAYLOAD);
                        int id = q.submit();
                        if (id < 0) {
                            break;
                        }
                        free--;
                        slotOfId[id] = slot;
                        seqOfId[id] = nextSeq++;
                        added++;
                    }
                    if (added > 0) {
                        q.publish();
                        if (q.needsKick() && eventfds) {
                            kicks++;
                            kick.signal();
                        }
                    }
                    int collected = 0;
                    int id;
                    while ((id = q.pollUsed()) >= 0) {
                        long seq = seqOfId[id];
                        long gpa = plan.dataGpa() + (long) slotOfId[id] * SLOT_BYTES;
                        assertEquals(PAYLOAD, q.usedLength(), "used length of seq " + seq);
                        for (int i = 0; i < PAYLOAD; i++) {
                            byte expected = CrossProcessDeviceMain.reply(mem, gpa, i);
                            byte got = mem.get(ValueLayout.JAVA_BYTE, gpa + PAYLOAD + i);
                            if (got != expected) {
                                fail("seed " + seed + ": reply of seq " + seq + " byte " + i + " is " + got + ", expected " + expected);
                            }
                        }
                        freeSlots[free++] = slotOfId[id];
                        collected++;
                    }
                    completed += collected;
                    if (collected == 0 && added == 0) {
                        if (!child.isAlive()) {
                            String output = child.output();
                            assumeTrue(!output.contains("EVENTFD-UNAVAILABLE"), () -> "eventfds cannot be shared with the child here: " + output);
                            fail("device process ended after " + completed + " chains: " + output);
                        }
                        if (System.nanoTime() > deadline) {
                            fail("seed " + seed + ": " + completed + " of " + CHAINS + " chains after " + DEADLINE_SECONDS
                                    + " s; driver " + q + "; device output: " + child.output());
                        }
                        if (eventfds) {
                            if (!q.enableUsedNotification()) {
                                sleeps++;
                                // Timed out with a used chain there: the call may just be late (the device is
                                // between publish and signal); lost if it does not come within the grace time.
                                if (!call.await(AWAIT_MILLIS) && q.enableUsedNotification() && !call.await(LATE_MILLIS)) {
                                    lostCalls++;
                                }
                            }
                            q.disableUsedNotification();
                        } else {
                            Thread.onSpinWait();
                        }
                    }
                }
                int exit = child.await(TimeUnit.SECONDS.toMillis(30));
                String output = child.output();
                System.out.println("parent: completed=" + completed + " sleeps=" + sleeps + " kicks=" + kicks
                        + " lostCalls=" + lostCalls + "; child: " + output.strip());
                assertEquals(0, exit, () -> "device process exit status (-1: killed after its time): " + output);
                assertTrue(output.contains("SERVED " + CHAINS + " "), output);
                assertTrue(output.contains("lostKicks=0"), "no kick lost: " + output);
                assertEquals(0, lostCalls, "no call lost");
            }
        }
    }
}
