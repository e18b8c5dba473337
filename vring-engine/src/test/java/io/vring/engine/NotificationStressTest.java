package io.vring.engine;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Both sides sleep on eventfds with the real handshake, on tiny rings with small random batches, for
 * a fixed time per variant: no wake-up is ever lost (the watchdog in {@link NotificationStress} sees
 * no stall), every reply comes back, and both sides really did sleep, so the race was exercised.
 * {@code -Dvring.stress.millis} sets the time per variant (default 2500), {@code -Dvring.stress.seed}
 * replays a seed (the interleaving itself is not reproducible).
 */
class NotificationStressTest {
    private static final long MILLIS = Long.getLong("vring.stress.millis", 2_500);

    static List<NotificationStress.Variant> variants() {
        return NotificationStress.variants();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("variants")
    void neitherSideSleepsThroughAWakeUpItWasOwed(NotificationStress.Variant variant) {
        long seed = Long.getLong("vring.stress.seed", System.nanoTime());
        System.out.println("NotificationStressTest " + variant + " seed " + seed);
        NotificationStress.Result result = NotificationStress.run(variant, seed, MILLIS);
        System.out.println(result.summary());
        if (result.failure() != null) {
            throw new AssertionError("seed " + seed + ": " + result.failure(), result.failure());
        }
        if (!result.stalls().isEmpty()) {
            fail(variant + " seed " + seed + ": " + result.stalls().size() + " stall(s), each a lost wake-up:\n"
                    + String.join("\n", result.stalls()));
        }
        assertTrue(result.chains() > 1_000, "only " + result.chains() + " chains in " + MILLIS + " ms");
        assertTrue(result.deviceSleeps() > 0 && result.driverSleeps() > 0,
                "both sides must sleep for the race to be exercised: " + result.summary());
        assertFalse(result.kicks() == 0 || result.calls() == 0, "no kicks or no calls: " + result.summary());
    }

    @Test
    void theWatchdogCatchesADriverAsleepOnACallThatNeverCame() {
        long seed = Long.getLong("vring.stress.seed", System.nanoTime());
        NotificationStress.Variant variant = new NotificationStress.Variant(RingKind.SPLIT, NotificationStress.Suppression.FLAGS, 4);
        System.out.println("NotificationStressTest watchdog check " + variant + " seed " + seed);
        NotificationStress.Result result = NotificationStress.run(variant, seed, 1_500, true);
        System.out.println(result.summary());
        assertNull(result.failure(), () -> "seed " + seed + ": " + result.failure());
        assertFalse(result.stalls().isEmpty(), "a device that never calls must stall the driver: " + result.summary());
        String first = result.stalls().getFirst();
        System.out.println(first);
        assertTrue(first.contains("driverAsleep=true") && first.contains("avail.idx=") && first.contains("used.idx="), first);
    }
}
