package io.vring.engine.inflight;

import io.vring.engine.memory.SharedMemory;
import io.vring.engine.packed.PackedLayout;
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
import static org.junit.jupiter.api.Assertions.fail;

/**
 * A SIGKILL can land between any two stores, packed ring edition. A model driver and device run a
 * packed ring over N requests of one to three descriptors, completed out of order in batches; at
 * every store boundary (each store to the inflight region, and the device's two ring stores of a
 * batch: the other used descriptors, then the first one's flags) the region and the ring are
 * copied. From every copy a new back-end recovers, with only the region and the ring's flags at one
 * slot, and must get back exactly the requests the driver is still waiting for: the inflight ones
 * once each in fetch order with the descriptors the driver wrote, then the rest fetched again from
 * the ring at the derived avail position; never one whose completion the driver can see. Then it
 * carries on, completing all of them, and the region ends empty at the driver's avail position.
 */
class PackedInflightCrashTest {
    private static final long BASE_SEED = Long.getLong("vring.test.seed", System.nanoTime());

    static LongStream seeds() {
        System.out.println("PackedInflightCrashTest base seed " + BASE_SEED + " (-Dvring.test.seed=" + BASE_SEED + ")");
        return LongStream.range(0, 40).map(i -> BASE_SEED + i);
    }

    /** The guest's packed ring: one descriptor per slot. */
    private record Ring(long[] addr, int[] len, int[] id, int[] flags) {
        Ring(int q) {
            this(new long[q], new int[q], new int[q], new int[q]);
        }

        Ring copy() {
            return new Ring(addr.clone(), len.clone(), id.clone(), flags.clone());
        }
    }

    /** What a kill at one instant leaves: the region's bytes and what the guest memory shows. */
    private record Snapshot(byte[] region, Ring ring, int[] idToRequest, boolean[] completed, int made,
                            int visibleUsedSlot, int visibleUsedWrap) {
    }

    private static long addrOf(int request, int k) {
        return 0x10_0000L * (request + 1) + 0x100L * k;
    }

    @ParameterizedTest(name = "seed {0}")
    @MethodSource("seeds")
    void everyRequestFetchedAndNotCompletedIsResubmittedOnceInFetchOrderAtEveryCrashInstant(long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        int q = rnd.nextInt(2, 17); // packed sizes need not be powers of two
        int n = rnd.nextInt(30, 200);
        String where = "seed " + seed + " (Q=" + q + ", N=" + n + ")";
        List<Snapshot> snapshots = new ArrayList<>();
        try (SharedMemory live = SharedMemory.create("packed-inflight-live", PackedInflightLayout.regionSize(1, q));
             SharedMemory scratch = SharedMemory.create("packed-inflight-recovered", PackedInflightLayout.regionSize(1, q))) {
            run(rnd, q, n, live.segment(), snapshots);
            for (int i = 0; i < snapshots.size(); i++) {
                check(snapshots.get(i), q, n, scratch.segment(), where + ", crash after store " + i + " of " + snapshots.size());
            }
        }
    }

    private static void run(SplittableRandom rnd, int q, int n, MemorySegment region, List<Snapshot> out) {
        Ring ring = new Ring(q);
        int[] idToRequest = new int[q];
        int[] idSlots = new int[q];
        boolean[] completed = new boolean[n];
        List<Integer> freeIds = new ArrayList<>();
        for (int i = 0; i < q; i++) {
            freeIds.add(i);
        }
        // made, visible used slot, visible used wrap
        int[] shared = {0, 0, 1};
        StoreProbe probe = () -> out.add(new Snapshot(region.toArray(JAVA_BYTE), ring.copy(), idToRequest.clone(),
                completed.clone(), shared[0], shared[1], shared[2]));
        PackedInflightQueue inflight = PackedInflightQueue.of(region, 0, q, probe);
        inflight.recover(slot -> fail("a fresh region reads no ring"));

        int driverAvail = 0, driverAvailWrap = 1, driverUsed = 0, driverUsedWrap = 1, numFree = q;
        int deviceAvail = 0, deviceAvailWrap = 1, deviceUsed = 0, deviceUsedWrap = 1;
        long counter = 0;
        List<int[]> fetched = new ArrayList<>(); // {entry, id, slots}
        int done = 0;
        while (done < n) {
            int action = rnd.nextInt(10);
            if (action < 4) {
                // Driver: make a request of 1-3 descriptors available.
                int len = rnd.nextInt(1, 4);
                if (len <= numFree && !freeIds.isEmpty() && shared[0] < n) {
                    int id = freeIds.remove(rnd.nextInt(freeIds.size()));
                    int request = shared[0]++;
                    idToRequest[id] = request;
                    idSlots[id] = len;
                    numFree -= len;
                    for (int k = 0; k < len; k++) {
                        ring.addr[driverAvail] = addrOf(request, k);
                        ring.len[driverAvail] = k + 1;
                        ring.id[driverAvail] = id;
                        ring.flags[driverAvail] = PackedLayout.availableFlags(driverAvailWrap)
                                | (k < len - 1 ? PackedLayout.F_NEXT : 0);
                        if (++driverAvail == q) {
                            driverAvail = 0;
                            driverAvailWrap ^= 1;
                        }
                    }
                }
            } else if (action < 7) {
                // Device: fetch one chain, recording each descriptor.
                if (PackedLayout.isAvailable(ring.flags[deviceAvail], deviceAvailWrap)) {
                    int entry = inflight.beginChain(counter++);
                    int slots = 0;
                    int id;
                    boolean last;
                    do {
                        int flags = ring.flags[deviceAvail];
                        last = (flags & PackedLayout.F_NEXT) == 0;
                        id = ring.id[deviceAvail];
                        inflight.addDescriptor(ring.addr[deviceAvail], ring.len[deviceAvail], id, flags, last);
                        slots++;
                        if (++deviceAvail == q) {
                            deviceAvail = 0;
                            deviceAvailWrap ^= 1;
                        }
                    } while (!last);
                    fetched.add(new int[] {entry, id, slots});
                }
            } else if (action < 9) {
                // Device: complete a random batch out of order.
                if (!fetched.isEmpty()) {
                    int k = rnd.nextInt(1, Math.min(fetched.size(), 4) + 1);
                    List<int[]> batch = new ArrayList<>();
                    for (int i = 0; i < k; i++) {
                        int[] chain = fetched.remove(rnd.nextInt(fetched.size()));
                        batch.add(chain);
                        inflight.releaseChain(chain[0]);
                    }
                    int slot = deviceUsed, wrap = deviceUsedWrap;
                    int[] usedSlots = new int[k];
                    int[] usedWraps = new int[k];
                    for (int i = 0; i < k; i++) {
                        usedSlots[i] = slot;
                        usedWraps[i] = wrap;
                        slot += batch.get(i)[2];
                        if (slot >= q) {
                            slot -= q;
                            wrap ^= 1;
                        }
                    }
                    inflight.setUsedPosition(slot, wrap);
                    for (int i = 0; i < k; i++) {
                        ring.id[usedSlots[i]] = batch.get(i)[1];
                        ring.len[usedSlots[i]] = 0;
                        if (i > 0) {
                            ring.flags[usedSlots[i]] = PackedLayout.usedFlags(usedWraps[i]);
                        }
                    }
                    probe.stored();
                    // The first slot's flags, last, with release: the driver sees the whole batch.
                    ring.flags[usedSlots[0]] = PackedLayout.usedFlags(usedWraps[0]);
                    for (int[] chain : batch) {
                        completed[idToRequest[chain[1]]] = true;
                    }
                    shared[1] = slot;
                    shared[2] = wrap;
                    probe.stored();
                    deviceUsed = slot;
                    deviceUsedWrap = wrap;
                    done += k;
                    for (int[] chain : batch) {
                        inflight.clearInflight(chain[0]);
                    }
                    inflight.commitBatch();
                }
            } else {
                // Driver: consume used descriptors, freeing their ids and slots.
                while (PackedLayout.isUsed(ring.flags[driverUsed], driverUsedWrap)) {
                    int id = ring.id[driverUsed];
                    freeIds.add(id);
                    numFree += idSlots[id];
                    driverUsed += idSlots[id];
                    if (driverUsed >= q) {
                        driverUsed -= q;
                        driverUsedWrap ^= 1;
                    }
                }
            }
        }
    }

    private static void check(Snapshot s, int q, int n, MemorySegment scratch, String where) {
        scratch.copyFrom(MemorySegment.ofArray(s.region()));
        Ring ring = s.ring();
        int[] reads = new int[1];
        PackedInflightRecovery r = PackedInflightQueue.of(scratch, 0, q).recover(slot -> {
            reads[0]++;
            return ring.flags()[slot];
        });
        if (r.fresh()) {
            assertEquals(0, s.made(), where + ": a fresh region while requests exist");
            return;
        }
        assertEquals(s.visibleUsedSlot() + "/" + s.visibleUsedWrap(), r.usedSlot() + "/" + r.usedWrap(),
                where + ": used position after recovery vs what the driver sees");
        List<Integer> again = new ArrayList<>();
        for (PackedInflightRecovery.Chain chain : r.chainsInCounterOrder()) {
            int request = s.idToRequest()[chain.id()];
            for (int k = 0; k < chain.slots(); k++) {
                PackedInflightRecovery.Descriptor d = chain.descriptors().get(k);
                if (d.addr() != addrOf(request, k) || d.len() != k + 1) {
                    fail(where + ": chain of request " + request + " recorded descriptor " + k + " as " + d);
                }
            }
            if (!again.isEmpty() && request <= again.getLast()) {
                fail(where + ": resubmitted out of fetch order: " + again + " then " + request);
            }
            again.add(request);
        }
        // The new device fetches from the derived position until the ring shows nothing available.
        int slot = r.nextAvailSlot(), wrap = r.nextAvailWrap(), seen = 0;
        boolean chainStart = true;
        List<Integer> rereadSlots = new ArrayList<>();
        while (PackedLayout.isAvailable(ring.flags()[slot], wrap)) {
            boolean last = (ring.flags()[slot] & PackedLayout.F_NEXT) == 0;
            int request = s.idToRequest()[ring.id()[slot]];
            rereadSlots.add(slot);
            if (chainStart && ring.addr()[slot] != addrOf(request, 0)) {
                fail(where + ": fetch at " + slot + " did not start at a chain's first descriptor");
            }
            if (++slot == q) {
                slot = 0;
                wrap ^= 1;
            }
            if (++seen > q) {
                fail(where + ": more than a ring's worth available");
            }
            if (last) {
                again.add(request);
            }
            chainStart = last;
        }
        for (int req : again) {
            if (s.completed()[req]) {
                fail(where + ": request " + req + " was completed to the driver and is submitted again: " + again);
            }
        }
        Set<Integer> expected = new HashSet<>();
        for (int req = 0; req < s.made(); req++) {
            if (!s.completed()[req]) {
                expected.add(req);
            }
        }
        assertEquals(again.size(), new HashSet<>(again).size(), where + ": a request comes back twice: " + again);
        assertEquals(expected, new HashSet<>(again), where + ": requests the driver still waits for");

        PackedInflightRecovery twice = PackedInflightQueue.of(scratch, 0, q).recover(x -> ring.flags()[x]);
        assertEquals(r.chainsInCounterOrder(), twice.chainsInCounterOrder(), where + ": a second recovery differs");
        assertEquals(r.nextAvailSlot() + "/" + r.nextAvailWrap(), twice.nextAvailSlot() + "/" + twice.nextAvailWrap(), where);

        // The new back-end carries on: it fetches what the ring still offers, completes everything in
        // one batch; afterwards nothing is in flight and both positions are where the driver stopped.
        PackedInflightQueue carryOn = PackedInflightQueue.of(scratch, 0, q);
        List<Integer> entries = new ArrayList<>();
        for (PackedInflightRecovery.Chain chain : r.chainsInCounterOrder()) {
            entries.add(chain.entry());
        }
        long counter = r.nextCounter();
        boolean begin = true;
        for (int at : rereadSlots) {
            if (begin) {
                entries.add(carryOn.beginChain(counter++));
            }
            begin = (ring.flags()[at] & PackedLayout.F_NEXT) == 0;
            carryOn.addDescriptor(ring.addr()[at], ring.len()[at], ring.id()[at], ring.flags()[at], begin);
        }
        for (int entry : entries) {
            carryOn.releaseChain(entry);
        }
        carryOn.setUsedPosition(slot, wrap);
        for (int entry : entries) {
            carryOn.clearInflight(entry);
        }
        carryOn.commitBatch();
        PackedInflightRecovery after = PackedInflightQueue.of(scratch, 0, q).recover(x -> fail("nothing half published"));
        assertEquals(List.of(), after.chainsInCounterOrder(), where + ": in flight after everything completed");
        assertEquals(slot + "/" + wrap, after.nextAvailSlot() + "/" + after.nextAvailWrap(), where + ": avail position");
        assertEquals(slot + "/" + wrap, after.usedSlot() + "/" + after.usedWrap(), where + ": used position");
    }
}
