package io.vring.engine.inflight;

import io.vring.engine.memory.SharedMemory;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.stream.LongStream;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * A SIGKILL can land between any two stores. A model driver and device run a split ring over N
 * requests with out-of-order completion; at every store boundary (each store to the inflight region,
 * and the device's used idx publish) the region and the guest-visible ring are copied, which is what
 * a kill at that instant leaves behind. From every copy a new back-end recovers and must get back
 * exactly the requests the driver is still waiting for: the inflight ones, once each, in pop order,
 * then the rest re-read from the avail ring; never one whose completion the driver can see. Then it
 * carries on, completing all of them, and the region ends empty at the driver's avail index.
 */
class SplitInflightCrashTest {
    private static final long BASE_SEED = Long.getLong("vring.test.seed", System.nanoTime());

    static LongStream seeds() {
        System.out.println("SplitInflightCrashTest base seed " + BASE_SEED + " (-Dvring.test.seed=" + BASE_SEED + ")");
        return LongStream.range(0, 40).map(i -> BASE_SEED + i);
    }

    /** What a kill at one instant leaves: the region's bytes and what the guest memory shows. */
    private record Snapshot(byte[] region, int usedIdx, int availIdx, int[] availRing, int[] headToRequest,
                            boolean[] completed, int made) {
    }

    @ParameterizedTest(name = "seed {0}")
    @MethodSource("seeds")
    void everyRequestPoppedAndNotCompletedIsResubmittedOnceInPopOrderAtEveryCrashInstant(long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        int q = 1 << rnd.nextInt(1, 5);
        int base = rnd.nextBoolean() ? 0 : 65536 - rnd.nextInt(1, 3 * q);
        int n = rnd.nextInt(30, 200);
        String where = "seed " + seed + " (Q=" + q + ", base=" + base + ", N=" + n + ")";
        List<Snapshot> snapshots = new ArrayList<>();
        try (SharedMemory live = SharedMemory.create("split-inflight-live", SplitInflightLayout.regionSize(1, q));
             SharedMemory scratch = SharedMemory.create("split-inflight-recovered", SplitInflightLayout.regionSize(1, q))) {
            run(rnd, q, base, n, live.segment(), snapshots);
            for (int i = 0; i < snapshots.size(); i++) {
                check(snapshots.get(i), q, scratch.segment(), where + ", crash after store " + i + " of " + snapshots.size());
            }
        }
    }

    private static void run(SplittableRandom rnd, int q, int base, int n, MemorySegment region, List<Snapshot> out) {
        int[] availRing = new int[q];
        int[] headToRequest = new int[q];
        boolean[] completed = new boolean[n];
        List<Integer> freeHeads = new ArrayList<>();
        for (int h = 0; h < q; h++) {
            freeHeads.add(h);
        }
        int[] state = new int[3]; // availIdx, usedIdx, made
        state[0] = base;
        state[1] = base;
        StoreProbe probe = () -> out.add(new Snapshot(region.toArray(JAVA_BYTE), state[1], state[0],
                availRing.clone(), headToRequest.clone(), completed.clone(), state[2]));
        SplitInflightQueue inflight = SplitInflightQueue.of(region, 0, q, probe);
        assertTrue(inflight.recover(base).fresh());

        int[] usedRing = new int[q];
        int lastAvail = base;
        int driverSeenUsed = base;
        long counter = 0;
        List<Integer> popped = new ArrayList<>();
        int done = 0;
        while (done < n) {
            int action = rnd.nextInt(10);
            if (action < 4) {
                // Driver: make a request available on a free head.
                if (!freeHeads.isEmpty() && state[2] < n) {
                    int head = freeHeads.remove(rnd.nextInt(freeHeads.size()));
                    headToRequest[head] = state[2]++;
                    availRing[state[0] % q] = head;
                    state[0] = (state[0] + 1) & 0xFFFF;
                }
            } else if (action < 7) {
                // Device: pop, then mark in flight.
                if (lastAvail != state[0]) {
                    int head = availRing[lastAvail % q];
                    lastAvail = (lastAvail + 1) & 0xFFFF;
                    inflight.markInflight(head, counter++);
                    popped.add(head);
                }
            } else if (action < 9) {
                // Device: complete a random batch out of order.
                if (!popped.isEmpty()) {
                    int k = rnd.nextInt(1, Math.min(popped.size(), 4) + 1);
                    int[] batch = new int[k];
                    for (int i = 0; i < k; i++) {
                        batch[i] = popped.remove(rnd.nextInt(popped.size()));
                    }
                    inflight.linkBatch(batch, k);
                    for (int i = 0; i < k; i++) {
                        usedRing[(state[1] + i) % q] = batch[i];
                        completed[headToRequest[batch[i]]] = true;
                    }
                    state[1] = (state[1] + k) & 0xFFFF; // the used idx release store: the driver sees the batch
                    done += k;
                    probe.stored();
                    for (int head : batch) {
                        inflight.clearInflight(head);
                    }
                    inflight.setUsedIdx(state[1]);
                }
            } else {
                // Driver: consume used entries, freeing their heads.
                while (driverSeenUsed != state[1]) {
                    freeHeads.add(usedRing[driverSeenUsed % q]);
                    driverSeenUsed = (driverSeenUsed + 1) & 0xFFFF;
                }
            }
        }
    }

    private static void check(Snapshot s, int q, MemorySegment scratch, String where) {
        scratch.copyFrom(MemorySegment.ofArray(s.region()));
        SplitInflightRecovery r = SplitInflightQueue.of(scratch, 0, q).recover(s.usedIdx());
        List<Integer> resubmitted = new ArrayList<>();
        for (int head : r.headsInCounterOrder()) {
            resubmitted.add(s.headToRequest()[head]);
        }
        for (int i = 1; i < resubmitted.size(); i++) {
            if (resubmitted.get(i) <= resubmitted.get(i - 1)) {
                fail(where + ": resubmitted out of pop order: " + resubmitted);
            }
        }
        int reread = (s.availIdx() - r.nextAvail()) & 0xFFFF;
        if (reread > q) {
            fail(where + ": resume avail index " + r.nextAvail() + " is past the driver's " + s.availIdx());
        }
        List<Integer> again = new ArrayList<>(resubmitted);
        for (int i = 0; i < reread; i++) {
            again.add(s.headToRequest()[s.availRing()[(r.nextAvail() + i) % q]]);
        }
        Set<Integer> expected = new HashSet<>();
        for (int req = 0; req < s.made(); req++) {
            if (!s.completed()[req]) {
                expected.add(req);
            }
        }
        for (int req : again) {
            if (s.completed()[req]) {
                fail(where + ": request " + req + " was completed to the driver and is submitted again: " + again);
            }
        }
        assertEquals(again.size(), new HashSet<>(again).size(), where + ": a request comes back twice: " + again);
        assertEquals(expected, new HashSet<>(again), where + ": requests the driver still waits for");

        SplitInflightRecovery twice = SplitInflightQueue.of(scratch, 0, q).recover(s.usedIdx());
        assertEquals(List.of(box(r.headsInCounterOrder())), List.of(box(twice.headsInCounterOrder())),
                where + ": a second recovery (killed again) finds the same heads");
        assertEquals(r.nextAvail(), twice.nextAvail(), where);
        assertEquals(0, twice.batchFinished(), where + ": the first recovery left a batch half finished");

        // The new back-end carries on: it completes the resubmitted heads, then pops and completes the
        // rest; afterwards the region holds nothing in flight and resumes at the driver's avail idx.
        SplitInflightQueue carryOn = SplitInflightQueue.of(scratch, 0, q);
        int used = s.usedIdx();
        long counter = r.nextCounter();
        for (int i = 0; i < reread; i++) {
            carryOn.markInflight(s.availRing()[(r.nextAvail() + i) % q], counter++);
        }
        int[] all = new int[r.headsInCounterOrder().length + reread];
        System.arraycopy(r.headsInCounterOrder(), 0, all, 0, r.headsInCounterOrder().length);
        for (int i = 0; i < reread; i++) {
            all[r.headsInCounterOrder().length + i] = s.availRing()[(r.nextAvail() + i) % q];
        }
        carryOn.linkBatch(all, all.length);
        used = (used + all.length) & 0xFFFF;
        for (int head : all) {
            carryOn.clearInflight(head);
        }
        carryOn.setUsedIdx(used);
        SplitInflightRecovery after = SplitInflightQueue.of(scratch, 0, q).recover(used);
        assertEquals(0, after.headsInCounterOrder().length, where + ": in flight after everything completed");
        assertEquals(s.availIdx(), after.nextAvail(), where + ": resume index after everything completed");
    }

    private static Integer[] box(int[] a) {
        Integer[] b = new Integer[a.length];
        for (int i = 0; i < a.length; i++) {
            b[i] = a[i];
        }
        return b;
    }
}
