package io.vring.backends.crash;

import io.vring.engine.RingKind;
import io.vring.protocol.BackendClient;
import io.vring.protocol.FrontendConfig;
import io.vring.protocol.FrontendDevice;
import io.vring.protocol.VhostUserException;
import io.vring.protocol.message.ProtocolFeatures;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.stream.Stream;

/**
 * The crash test: this JVM is the front-end (a {@link FrontendDevice} with one ring) streaming
 * requests to a back-end child process ({@link CrashBackend}) that is killed with SIGKILL once per
 * trial, by us at a random instant or by itself at a {@link CrashPoint}. The front-end notices the
 * dead socket, reconnects with back-off to the next incarnation and replays the start sequence as
 * QEMU does (SET_INFLIGHT_FD with the region kept since the first start, ring base from the used
 * side), and the stream carries on over the same rings and memory. After the last trial a last
 * back-end finishes the stream and the {@link CrashLedger} gives the verdict: every request completed
 * exactly once with its right answer.
 *
 * <p>A back-end JVM takes seconds to start on a busy machine, so the next incarnations are started
 * while the current one serves, each on a socket of its own ({@code backend-g<n>.sock} in a temporary
 * directory, kept with the back-ends' logs when a run with inflight tracking fails).
 */
final class CrashTest {
    private static final CrashPoint[] DETERMINISTIC = {CrashPoint.AFTER_MARK, CrashPoint.BETWEEN_USED_AND_CLEAR,
            CrashPoint.MID_BATCH, CrashPoint.RING_WRAP};
    /** Back-end processes started ahead of the one serving. */
    private static final int PIPELINE_DEPTH = 2;
    /** Back-ends that may die while the front-end replays its start sequence before the run gives up. */
    private static final int MAX_SETUP_DEATHS = 3;
    private static final Duration REPLY_TIMEOUT = Duration.ofSeconds(10);
    private static final Duration RECONNECT_GIVE_UP = Duration.ofSeconds(60);
    /** A random-instant trial kills anyway after this long without a completion (the negative control stalls). */
    private static final long STALL_KILL_MILLIS = 1_000;
    /** A deterministic trial whose point is not reached within this long is killed by the front-end and reported. */
    private static final long POINT_TIMEOUT_MILLIS = 20_000;
    /** The last back-end gets this long without progress to finish the stream; what is left is lost. */
    private static final long DRAIN_TIMEOUT_MILLIS = 3_000;

    /**
     * @param queueSize ring size; small, so the ring wraps often
     * @param window    requests the driver keeps in flight (the device holds {@value CrashDevice#KEEP_IN_FLIGHT} of them)
     * @param tail      requests the last back-end serves after the last trial
     */
    record Settings(RingKind kind, int trials, long seed, boolean inflight, int queueSize, int window, long tail) {
        static Settings of(RingKind kind, int trials, long seed, boolean inflight) {
            return new Settings(kind, trials, seed, inflight, 64, 24, 200);
        }
    }

    /** The verdict. {@code passed}: no loss, no duplicate or wrong answer, every crash point reached. */
    record Result(int trials, long lost, long duplicated, long reExecuted, long completions, long outOfOrder,
                  int pointsMissed, String firstProblem) {
        boolean passed() {
            return lost == 0 && duplicated == 0 && pointsMissed == 0;
        }

        String lastLine() {
            return trials + " trials, " + lost + " lost, " + duplicated + " duplicated, " + reExecuted + " re-executed";
        }
    }

    private final Settings settings;
    private final PrintStream out;
    private final SplittableRandom random;
    private final CrashLedger ledger = new CrashLedger();
    private int pointsMissed;
    private int setupDeaths;
    private FrontendDevice device;
    private RequestStream stream;
    private int trialsRun;

    CrashTest(Settings settings, PrintStream out) {
        this.settings = settings;
        this.out = out;
        this.random = new SplittableRandom(settings.seed());
    }

    /** Which point each trial crashes at: a third deterministic (at least one of each, if there are trials for it), the rest random. */
    static CrashPoint[] plan(int trials) {
        CrashPoint[] plan = new CrashPoint[trials];
        Arrays.fill(plan, CrashPoint.RANDOM);
        int deterministic = Math.min(trials, Math.max(DETERMINISTIC.length, trials / 3));
        for (int k = 0; k < deterministic; k++) {
            plan[(int) ((long) k * trials / deterministic)] = DETERMINISTIC[k % DETERMINISTIC.length];
        }
        return plan;
    }

    Result run() throws IOException, InterruptedException {
        out.println("crash-test: " + settings.kind().name().toLowerCase() + " ring of " + settings.queueSize() + ", "
                + settings.trials() + " trials, seed " + settings.seed() + ", inflight tracking "
                + (settings.inflight() ? "on" : "OFF (negative control: the front-end rewinds to the used index)"));
        Path dir = Files.createTempDirectory("vring-crash-");
        // No back-end channel: the test has no use for it, and an adopted socket fd (Connection.adopt,
        // which the channel uses) was seen closing a later connection's reused fd number after a kill.
        FrontendConfig config = FrontendConfig.of(1, settings.queueSize()).withProtocolFeatures(
                FrontendConfig.DEFAULT_PROTOCOL_FEATURES & ~ProtocolFeatures.bit(ProtocolFeatures.BACKEND_REQ));
        if (settings.kind() == RingKind.PACKED) {
            config = config.packed();
        }
        if (settings.inflight()) {
            config = config.withInflight();
        }
        CrashPoint[] plan = plan(settings.trials());
        // Generation g (1-based) serves trial g; the last one, with no crash point, finishes the stream.
        int generations = settings.trials() + 1;
        BackendProcess[] backends = new BackendProcess[generations + 1];
        long[] armAfter = new long[generations + 1];
        long[] seeds = new long[generations + 1];
        for (int g = 1; g <= generations; g++) {
            armAfter[g] = 40 + random.nextInt(300);
            seeds[g] = random.nextLong();
        }
        int started = 0;
        List<BackendProcess> replacements = new ArrayList<>();
        try {
            for (int g = 1; g <= generations; g++) {
                // A JVM takes seconds to start on a busy machine: the next ones start while this one serves.
                for (; started < Math.min(generations, g + PIPELINE_DEPTH); started++) {
                    int n = started + 1;
                    backends[n] = BackendProcess.start(socketOf(dir, n), n, pointOf(plan, n), armAfter[n], seeds[n],
                            settings.inflight());
                }
                BackendProcess backend = attach(dir, backends[g], config, pointOf(plan, g), armAfter[g], seeds[g], replacements);
                if (g == generations) {
                    finish(stream);
                } else if (!runTrial(g, plan[g - 1], device, stream, backend)) {
                    break;
                }
                backend.close();
            }
            ledger.finish(stream == null ? 0 : stream.submitted());
        } finally {
            if (device != null) {
                device.close();
            }
            for (BackendProcess b : backends) {
                if (b != null) {
                    b.close();
                }
            }
            replacements.forEach(BackendProcess::close);
        }
        Result result = report();
        // Logs are worth keeping when recovery should have held and did not; the negative control fails by design.
        if (result.passed() || !settings.inflight()) {
            deleteQuietly(dir);
        } else {
            out.println("back-end logs kept in " + dir);
        }
        out.println(result.lastLine()); // the verdict is the last line
        return result;
    }

    /** Streams until the back-end dies; returns false if the run cannot go on (the driver queue broke). */
    private static CrashPoint pointOf(CrashPoint[] plan, int generation) {
        return generation <= plan.length ? plan[generation - 1] : CrashPoint.RANDOM;
    }

    /**
     * Connects to {@code backend} and starts the device on it (first time) or replays the start
     * sequence (after a crash). A back-end that dies during that sequence is one more crash instant,
     * not a failure: the requests in flight stay in the inflight region, and a fresh back-end with the
     * same crash point takes its place, as many as {@value #MAX_SETUP_DEATHS} times.
     *
     * @return the back-end the device now runs on
     */
    private BackendProcess attach(Path dir, BackendProcess backend, FrontendConfig config, CrashPoint point, long armAfter,
                                  long seed, List<BackendProcess> replacements) throws IOException, InterruptedException {
        for (int deaths = 0; ; deaths++) {
            BackendClient client;
            try {
                client = BackendClient.connectWithBackoff(socketOf(dir, backend.generation()), REPLY_TIMEOUT, RECONNECT_GIVE_UP);
            } catch (VhostUserException e) {
                out.println("back-end generation " + backend.generation() + " never listened; its output:");
                backend.logLines().forEach(l -> out.println("  " + l));
                throw e;
            }
            try {
                if (device == null) {
                    device = FrontendDevice.start(client, config);
                    stream = new RequestStream(device.ring(0), settings.window());
                } else {
                    device.reconnect(client);
                }
                return backend;
            } catch (VhostUserException e) {
                if (deaths == MAX_SETUP_DEATHS || backend.awaitExit(2_000) < 0) {
                    throw e; // the back-end is alive and refused us, or keeps dying: a real failure
                }
                setupDeaths++;
                out.println("back-end generation " + backend.generation() + " died during the start sequence ("
                        + e.getMessage() + ", exit status " + backend.awaitExit(0) + "); a fresh one takes its place");
                int generation = settings.trials() + 2 + replacements.size();
                backend = BackendProcess.start(socketOf(dir, generation), generation, point, armAfter, seed, settings.inflight());
                replacements.add(backend);
            }
        }
    }

    /** Each generation listens on a socket of its own, so several can start at once. */
    private static Path socketOf(Path dir, int generation) {
        return dir.resolve("backend-g" + generation + ".sock");
    }

    private boolean runTrial(int trial, CrashPoint point, FrontendDevice device, RequestStream stream, BackendProcess backend)
            throws InterruptedException {
        trialsRun++;
        long killAfter = point == CrashPoint.RANDOM ? 20 + random.nextInt(400) : Long.MAX_VALUE;
        long completedHere = 0;
        long lastProgress = System.currentTimeMillis();
        boolean killedByUs = false;
        boolean timedOut = false;
        for (;;) {
            stream.submit(Long.MAX_VALUE);
            int n = stream.collect(ledger);
            long now = System.currentTimeMillis();
            if (n > 0) {
                completedHere += n;
                lastProgress = now;
            }
            if (stream.brokenReason() != null) {
                out.println("trial " + trial + ": the driver queue broke: " + stream.brokenReason()
                        + "; the run stops here");
                return false;
            }
            if (!killedByUs && (completedHere >= killAfter
                    || (point == CrashPoint.RANDOM && now - lastProgress > STALL_KILL_MILLIS))) {
                spinMicros(random.nextInt(200)); // not always right after a used entry arrived
                backend.killNine();
                killedByUs = true;
            }
            if (!killedByUs && point.isDeterministic() && now - lastProgress > POINT_TIMEOUT_MILLIS) {
                backend.killNine();
                killedByUs = true;
                timedOut = true;
            }
            if (n == 0 && !stream.awaitUsed(5) && device.backend().awaitDisconnect(1)) {
                break;
            }
        }
        int status = backend.awaitExit(10_000);
        long[] inFlight = new long[settings.window()];
        int count = stream.inFlight(inFlight);
        boolean reached = point == CrashPoint.RANDOM ? killedByUs : !timedOut && reachedItself(backend);
        if (point.isDeterministic() && !reached) {
            pointsMissed++;
        }
        ledger.crashed(point, reached, inFlight, count);
        out.println("trial " + trial + ": " + (point == CrashPoint.RANDOM ? "kill -9 at a random instant" : point.description()
                + (reached ? " (back-end killed itself)" : " NOT REACHED")) + " after " + completedHere
                + " completions; exit status " + status + ", " + count + " requests in flight");
        return true;
    }

    private static boolean reachedItself(BackendProcess backend) {
        return backend.logLines().stream().anyMatch(l -> l.contains("crash point") && l.contains("reached"));
    }

    /** The last back-end serves {@code tail} more requests, then everything in flight; what never comes back is lost. */
    private void finish(RequestStream stream) {
        long limit = stream.submitted() + settings.tail();
        long lastProgress = System.currentTimeMillis();
        while (stream.brokenReason() == null && (stream.submitted() < limit || stream.outstanding() > 0)) {
            stream.submit(limit);
            int n = stream.collect(ledger);
            long now = System.currentTimeMillis();
            if (n > 0) {
                lastProgress = now;
            } else if (now - lastProgress > DRAIN_TIMEOUT_MILLIS) {
                out.println("the last back-end left " + stream.outstanding() + " requests unanswered for "
                        + DRAIN_TIMEOUT_MILLIS + " ms");
                break;
            } else {
                stream.awaitUsed(5);
            }
        }
    }

    private Result report() {
        out.println("per crash point: trials, requests in flight at the kill, of those resubmitted and re-executed by the next back-end:");
        for (Map.Entry<CrashPoint, CrashLedger.PointStats> e : ledger.points().entrySet()) {
            CrashLedger.PointStats s = e.getValue();
            out.printf("  %-46s %3d trials%s, %5d in flight, %5d resubmitted, %5d re-executed%n", e.getKey().description(),
                    s.trials, e.getKey().isDeterministic() ? " (" + s.reached + " reached)" : "", s.inFlightAtKill,
                    s.resubmitted, s.reExecuted);
        }
        out.println(ledger.completions() + " completions, " + ledger.outOfOrder() + " out of order, "
                + ledger.wrong() + " with a wrong or stale answer");
        if (ledger.firstProblem() != null) {
            out.println("first problem: " + ledger.firstProblem());
        }
        if (setupDeaths > 0) {
            out.println(setupDeaths + " back-ends died (not killed by this test) while the front-end replayed its start sequence");
        }
        if (trialsRun < settings.trials()) {
            out.println("the run stopped after " + trialsRun + " of " + settings.trials() + " trials");
        }
        Result r = new Result(trialsRun, ledger.lost(), ledger.duplicated(), ledger.reExecuted(),
                ledger.completions(), ledger.outOfOrder(), pointsMissed, ledger.firstProblem());
        return r;
    }

    private static void spinMicros(long micros) {
        long until = System.nanoTime() + micros * 1_000;
        while (System.nanoTime() < until) {
            Thread.onSpinWait();
        }
    }

    private static void deleteQuietly(Path dir) {
        try (Stream<Path> files = Files.walk(dir)) {
            List<Path> all = new ArrayList<>(files.sorted(Comparator.reverseOrder()).toList());
            for (Path p : all) {
                Files.deleteIfExists(p);
            }
        } catch (IOException e) {
            System.getLogger(CrashTest.class.getName()).log(System.Logger.Level.WARNING, "cannot remove {0}: {1}", dir, e);
        }
    }
}
