package io.vring.engine.inflight;

import io.vring.engine.RingKind;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The device queues with inflight tracking on, killed and restarted: a real driver and a tracked
 * device queue over memfds ({@link CrashScenario}), the device out of order with at least eight
 * chains in flight, killed (the queue object dropped mid-call, every store made so far kept) on
 * either side of a store to the inflight region: right after a pop's mark, inside a publish before
 * or after the used ring store, mid batch, during recovery itself, across ring wraps. A new device
 * queue attached to the same region must resubmit first, in pop order, only requests the driver has
 * not seen completed, and in the end every request is completed exactly once, with its reply; the
 * driver queue itself refuses a used entry for a chain that is not outstanding.
 */
class DeviceInflightCrashTest {
    private static final long BASE_SEED = Long.getLong("vring.test.seed", System.nanoTime());

    static Stream<Arguments> everyStore() {
        return seedsPerKind("everyStore", 0, 2);
    }

    @ParameterizedTest(name = "{0} seed {1}")
    @MethodSource("everyStore")
    void aKillOnEitherSideOfAnyRegionStoreLosesNoRequestAndCompletesNoneTwice(RingKind kind, long seed) {
        int size = 16;
        int total = kind == RingKind.SPLIT ? 48 : 32; // packed makes about four times the stores per request
        try (CrashScenario s = new CrashScenario(kind, size)) {
            KillSwitch counter = KillSwitch.never();
            s.start(total, counter);
            s.runToEnd(new SplittableRandom(seed), "seed " + seed + " without a kill");
            long resubmitted = 0;
            for (KillSwitch.Side side : KillSwitch.Side.values()) {
                long stores = counter.count(side);
                assertTrue(stores > 3 * total, "stores counted " + side + ": " + stores);
                for (long k = 1; k <= stores; k++) {
                    String where = "seed " + seed + ", killed " + side + " region store " + k + " of " + stores;
                    SplittableRandom rnd = new SplittableRandom(seed);
                    boolean killed = false;
                    try {
                        s.start(total, KillSwitch.at(side, k));
                        while (!s.done()) {
                            s.step(rnd);
                        }
                    } catch (KillSwitch.Killed e) {
                        killed = true;
                    }
                    assertTrue(killed, where + ": the same run must reach that store");
                    s.restart(KillSwitch.never(), rnd);
                    s.runToEnd(rnd, where);
                    resubmitted += s.resubmittedTotal;
                }
            }
            assertTrue(resubmitted > 0, "some kills left chains in flight");
            System.out.println("DeviceInflightCrashTest " + kind + " seed " + seed + ": " + counter.count(KillSwitch.Side.BEFORE)
                    + " + " + counter.count(KillSwitch.Side.AFTER) + " kill points, " + resubmitted + " chains resubmitted");
        }
    }

    static Stream<Arguments> inOrderKills() {
        return seedsPerKind("inOrderKills", 200, 3);
    }

    /**
     * IN_ORDER: the device completes in pop order and publish folds each run into one used entry; the
     * region still tracks every chain of the run, so kills anywhere lose and repeat nothing.
     */
    @ParameterizedTest(name = "{0} seed {1}")
    @MethodSource("inOrderKills")
    void withInOrderRepeatedKillsLoseNoRequestAndCompleteNoneTwice(RingKind kind, long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        SplittableRandom killer = rnd.split();
        int size = kind == RingKind.SPLIT ? 1 << rnd.nextInt(4, 6) : rnd.nextInt(9, 33);
        String where = "seed " + seed + " (" + kind + " IN_ORDER, size " + size + ")";
        try (CrashScenario s = new CrashScenario(kind, size, true)) {
            int kills = 0;
            boolean killedAtStart = false;
            try {
                s.start(1500, KillSwitch.randomly(killer, 1500)); // may die while laying out the fresh region
            } catch (KillSwitch.Killed e) {
                kills++;
                killedAtStart = true;
            }
            kills += runThroughRandomKills(s, rnd, killer, killedAtStart);
            s.runToEnd(rnd, where);
            System.out.println("DeviceInflightCrashTest " + where + ": " + kills + " kills");
            assertTrue(kills > 0, where + ": never killed");
        }
    }

    static Stream<Arguments> repeatedKills() {
        return seedsPerKind("repeatedKills", 100, 6);
    }

    /**
     * Long runs killed again and again at random stores (also while recovering), sizes at random;
     * half the split runs first carry 65536 requests, so the kills land across the 16-bit index wrap.
     */
    @ParameterizedTest(name = "{0} seed {1}")
    @MethodSource("repeatedKills")
    void repeatedKillsAtRandomStoresLoseNoRequestAndCompleteNoneTwice(RingKind kind, long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        SplittableRandom killer = rnd.split();
        int size = kind == RingKind.SPLIT ? 1 << rnd.nextInt(4, 7) : rnd.nextInt(9, 65);
        boolean acrossWrap = kind == RingKind.SPLIT && (seed & 1) == 0;
        int prelude = acrossWrap ? 65536 - rnd.nextInt(3 * size) : 0;
        int total = prelude + 3000;
        String where = "seed " + seed + " (" + kind + ", size " + size + ", prelude " + prelude + ")";
        try (CrashScenario s = new CrashScenario(kind, size)) {
            s.start(total, KillSwitch.never());
            while (s.completed() < prelude) {
                s.step(rnd);
            }
            // The end of the prelude is a clean drop of the queue object: the run starts with a restart.
            int kills = runThroughRandomKills(s, rnd, killer, true);
            s.runToEnd(rnd, where);
            System.out.println("DeviceInflightCrashTest " + where + ": " + kills + " kills, " + s.incarnations
                    + " incarnations");
            assertTrue(kills > 0, where + ": never killed");
            assertEquals(kills + 2, s.incarnations, where + ": the first, the clean restart, one per kill");
        }
    }

    /**
     * Steps {@code s} to the end while the back-end is killed at random region stores (1 in 1500),
     * restarting it after each kill (and first, if {@code restartFirst}); returns the kills.
     */
    private static int runThroughRandomKills(CrashScenario s, SplittableRandom rnd, SplittableRandom killer,
                                             boolean restartFirst) {
        int kills = 0;
        boolean restart = restartFirst;
        while (!s.done()) {
            try {
                if (restart) {
                    restart = false;
                    s.restart(KillSwitch.randomly(killer, 1500), rnd);
                }
                s.step(rnd);
            } catch (KillSwitch.Killed e) {
                kills++;
                restart = true;
            }
        }
        return kills;
    }

    /** {@code count} seeds per ring kind from BASE_SEED + {@code offset}; prints the base seed to replay. */
    private static Stream<Arguments> seedsPerKind(String source, int offset, int count) {
        System.out.println("DeviceInflightCrashTest." + source + " base seed " + BASE_SEED + " (-Dvring.test.seed=" + BASE_SEED + ")");
        List<Arguments> all = new ArrayList<>();
        for (RingKind kind : RingKind.values()) {
            for (int i = 0; i < count; i++) {
                all.add(Arguments.of(kind, BASE_SEED + offset + i));
            }
        }
        return all.stream();
    }
}
