package io.vring.engine;

import java.util.List;

/**
 * The notification stress in a JVM started with {@code -Dvring.test.removeFences=true}: runs every
 * variant for the given milliseconds and prints one {@code STRESS} line each (with its stall count)
 * and the first stall's dump, then {@code STRESS-DONE}. Run by {@code NotificationStressWithoutFencesTest}.
 */
public final class NoFenceStressMain {

    public static void main(String[] args) {
        long millis = Long.parseLong(args[0]);
        long seed = args.length > 1 ? Long.parseLong(args[1]) : System.nanoTime();
        System.out.println("fencesRemoved=" + Fences.removed() + " millisPerVariant=" + millis + " seed=" + seed);
        long total = 0;
        List<NotificationStress.Variant> variants = NotificationStress.variants();
        for (int i = 0; i < variants.size(); i++) {
            NotificationStress.Result result = NotificationStress.run(variants.get(i), seed + i, millis);
            System.out.println(result.summary());
            if (!result.stalls().isEmpty()) {
                System.out.println("  first " + result.stalls().getFirst());
            }
            if (result.failure() != null) {
                result.failure().printStackTrace(System.out);
            }
            total += result.stalls().size();
            System.out.flush();
        }
        System.out.println("STRESS-DONE totalStalls=" + total);
    }

    private NoFenceStressMain() {
    }
}
