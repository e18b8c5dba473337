package io.vring.backends.crash;

import io.vring.engine.RingKind;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.util.concurrent.Callable;

/**
 * {@code vring crash-test}: proves inflight recovery with {@code kill -9}. See {@link CrashTest}. Exit
 * status 0 when every request completed exactly once with its right answer and every crash point was
 * reached, 1 otherwise.
 */
@Command(
        name = "crash-test",
        mixinStandardHelpOptions = true,
        description = {"Streams requests to a vhost-user back-end in a child process that keeps several in flight and",
                "completes them out of order, kills it with SIGKILL once per trial (at a random instant, or at a crash",
                "point of the inflight protocol the child reaches itself), restarts it, reconnects and checks that every",
                "request completes exactly once with the right answer. Last line: N trials, L lost, D duplicated, R re-executed."})
public final class CrashTestCommand implements Callable<Integer> {
    @Option(names = "--ring", defaultValue = "split", description = "split or packed (default: ${DEFAULT-VALUE}).")
    String ring;

    @Option(names = "--trials", defaultValue = "20", description = "Back-end kills (default: ${DEFAULT-VALUE}).")
    int trials;

    @Option(names = "--seed", description = "Seed of every random choice (default: a new one, printed).")
    Long seed;

    @Option(names = "--no-inflight", description = "Negative control: the device does not offer INFLIGHT_SHMFD, so the "
            + "front-end rewinds the ring to its used index as QEMU does. Expect losses or duplicates.")
    boolean noInflight;

    @Override
    public Integer call() throws Exception {
        RingKind kind = switch (ring) {
            case "split" -> RingKind.SPLIT;
            case "packed" -> RingKind.PACKED;
            default -> throw new IllegalArgumentException("--ring is split or packed, not " + ring);
        };
        if (trials < 1) {
            throw new IllegalArgumentException("--trials must be at least 1, got " + trials);
        }
        long s = seed != null ? seed : new java.util.SplittableRandom().nextLong();
        CrashTest.Result result = new CrashTest(CrashTest.Settings.of(kind, trials, s, !noInflight), System.out).run();
        return result.passed() ? 0 : 1;
    }
}
