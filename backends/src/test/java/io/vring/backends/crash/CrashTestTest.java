package io.vring.backends.crash;

import io.vring.engine.RingKind;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.util.Arrays;
import java.util.EnumSet;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code vring crash-test} against real back-end processes killed with SIGKILL: with inflight tracking
 * nothing is lost or completed twice across every crash point; without it (QEMU's rewind to the used
 * index) the same stream loses or duplicates requests, so the first test can fail.
 */
class CrashTestTest {

    @Test
    void sixTrialsReachEveryDeterministicCrashPointAndSomeRandomInstants() {
        CrashPoint[] plan = CrashTest.plan(6);
        EnumSet<CrashPoint> seen = EnumSet.noneOf(CrashPoint.class);
        seen.addAll(Arrays.asList(plan));
        assertEquals(EnumSet.allOf(CrashPoint.class), seen, Arrays.toString(plan));
        long random = Arrays.stream(CrashTest.plan(90)).filter(p -> p == CrashPoint.RANDOM).count();
        assertEquals(60, random, "two thirds of a long run kill at random instants");
    }

    @ParameterizedTest(name = "{0}")
    @EnumSource(RingKind.class)
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void everyRequestCompletesExactlyOnceWithItsAnswerAcrossSixKills(RingKind kind) throws Exception {
        long seed = new SplittableRandom().nextLong();
        System.out.println("seed " + seed);
        CrashTest.Result r = new CrashTest(CrashTest.Settings.of(kind, 6, seed, true), System.out).run();
        assertEquals(6, r.trials(), "seed " + seed);
        assertEquals(0, r.lost(), "seed " + seed + ": " + r.firstProblem());
        assertEquals(0, r.duplicated(), "seed " + seed + ": " + r.firstProblem());
        assertEquals(0, r.pointsMissed(), "seed " + seed + ": every deterministic crash point is reached");
        assertTrue(r.reExecuted() > 0, "seed " + seed + ": requests executing at a kill are run again");
        assertTrue(r.outOfOrder() > r.completions() / 2, "seed " + seed + ": the device completes out of order");
        assertTrue(r.passed());
    }

    @ParameterizedTest(name = "{0}")
    @EnumSource(RingKind.class)
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void withoutInflightTrackingTheRewindLosesOrDuplicatesRequests(RingKind kind) throws Exception {
        // One kill is enough: the requests the device held sit below the used index QEMU rewinds to.
        long seed = new SplittableRandom().nextLong();
        System.out.println("seed " + seed);
        CrashTest.Result r = new CrashTest(CrashTest.Settings.of(kind, 1, seed, false), System.out).run();
        assertTrue(r.lost() + r.duplicated() > 0, "seed " + seed + ": " + r.lastLine());
        assertFalse(r.passed());
    }
}
