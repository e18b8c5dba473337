package io.vring.engine;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The notification stress with the StoreLoad fences removed ({@code -Dvring.test.removeFences=true})
 * in a child JVM, to see what they prevent. Whether a stall happens is a matter of luck (and on x86
 * of the store buffer's timing), so this test only checks that the child ran every variant and
 * reported; it prints the stall counts. Off by default: {@code -Dvring.stress.noFences=true} runs it,
 * {@code -Dvring.stress.noFences.millis} sets the time per variant (default 7500: 60 s in all).
 */
@EnabledIfSystemProperty(named = "vring.stress.noFences", matches = "true")
class NotificationStressWithoutFencesTest {
    private static final long MILLIS = Long.getLong("vring.stress.noFences.millis", 7_500);

    @Test
    void theStressRunsWithoutFencesAndReportsItsStalls() throws Exception {
        long seed = Long.getLong("vring.stress.seed", System.nanoTime());
        int variants = NotificationStress.variants().size();
        System.out.println("NotificationStressWithoutFencesTest seed " + seed + ", " + MILLIS + " ms x " + variants + " variants");
        try (ChildJvm child = ChildJvm.start(NoFenceStressMain.class, List.of("-Dvring.test.removeFences=true"),
                List.of(Long.toString(MILLIS), Long.toString(seed)))) {
            int exit = child.await(variants * (MILLIS + 25_000L) + 30_000L);
            String output = child.output();
            System.out.println("---- child JVM without fences ----\n" + output + "---- end ----");
            assertEquals(0, exit, "child exit status (-1: killed after its time)");
            assertTrue(output.contains("fencesRemoved=true"), "the child runs without fences");
            assertEquals(variants, output.lines().filter(l -> l.startsWith("STRESS ")).count(), "one report per variant");
            assertTrue(output.contains("STRESS-DONE"), "the child finished");
        }
    }
}
