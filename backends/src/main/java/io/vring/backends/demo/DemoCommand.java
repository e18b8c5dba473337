package io.vring.backends.demo;

import io.vring.engine.DeviceQueue;
import io.vring.engine.DriverQueue;
import io.vring.engine.RingKind;
import io.vring.engine.RingPlacement;
import io.vring.engine.memory.GuestMemory;
import io.vring.engine.memory.SharedMemory;
import io.vring.engine.os.Libc;
import org.HdrHistogram.Histogram;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;

/**
 * {@code vring demo}: a driver and a device moving buffers through a real ring over shared memory
 * (a memfd), in one JVM on two threads or in two processes, and the rate and latency they reach.
 */
@Command(
        name = "demo",
        mixinStandardHelpOptions = true,
        description = {"Move buffers through split and/or packed virtqueues over a memfd and report the rate.",
                "Each chain carries one device-readable buffer whose first 8 bytes are a sequence number the",
                "device checks. Both sides busy-poll. Threads are not pinned (use taskset on the whole JVM)."})
public final class DemoCommand implements Callable<Integer> {

    /** Which ring layout(s) the demo runs. */
    public enum Ring { split, packed, both }

    @Option(names = "--ring", defaultValue = "both",
            description = "Ring layout: ${COMPLETION-CANDIDATES} (default: ${DEFAULT-VALUE}).")
    Ring ring;

    @Option(names = "--queue-size", defaultValue = "256",
            description = "Descriptors per queue, a power of two (default: ${DEFAULT-VALUE}).")
    int queueSize;

    @Option(names = "--batch", defaultValue = "32",
            description = "Buffers added or completed per publish (default: ${DEFAULT-VALUE}).")
    int batch;

    @Option(names = "--seconds", defaultValue = "3",
            description = "How long each ring runs (default: ${DEFAULT-VALUE}).")
    int seconds;

    @Option(names = "--cross-process", negatable = true, defaultValue = "true", fallbackValue = "true",
            description = "Also run the device in a child JVM over the same memfd (default: on).")
    boolean crossProcess;

    @Option(names = "--payload", defaultValue = "64",
            description = "Bytes per buffer, at least 8 (default: ${DEFAULT-VALUE}).")
    int payload;

    @Override
    public Integer call() throws Exception {
        if (payload < 8 || batch < 1 || seconds < 1) {
            System.err.println("demo: --payload must be >= 8, --batch and --seconds >= 1");
            return 2;
        }
        List<RingKind> kinds = switch (ring) {
            case split -> List.of(RingKind.SPLIT);
            case packed -> List.of(RingKind.PACKED);
            case both -> List.of(RingKind.SPLIT, RingKind.PACKED);
        };
        for (RingKind kind : kinds) {
            if (!kind.isValidSize(queueSize)) {
                System.err.println("demo: queue size " + queueSize + " is not valid for a " + kind.name().toLowerCase() + " ring");
                return 2;
            }
        }
        System.out.printf(Locale.ROOT, "vring demo: queue size %d, batch %d, payload %d B, %d s per run, busy-poll, EVENT_IDX%n",
                queueSize, batch, payload, seconds);
        System.out.printf(Locale.ROOT, "%-7s %-14s %12s %9s   %-28s %-28s%n", "ring", "device", "elements/s", "MB/s",
                "in-flight latency p50/p99/p99.9", "ping-pong RTT p50/p99/p99.9");
        boolean ok = true;
        for (RingKind kind : kinds) {
            ok &= runOne(kind, false);
            if (crossProcess) {
                ok &= runOne(kind, true);
            }
        }
        return ok ? 0 : 1;
    }

    private boolean runOne(RingKind kind, boolean childProcess) throws Exception {
        DemoRing plan = new DemoRing(kind, queueSize, payload);
        RingPlacement placement = plan.placement();
        try (SharedMemory shared = SharedMemory.create("vring-demo", plan.totalBytes())) {
            GuestMemory memory = shared.guestMemory(0);
            DriverQueue driverQueue = kind.driver("demo driver", memory, queueSize, placement.rings(), DemoRing.FEATURES,
                    placement.indirect());
            Process child = null;
            Thread deviceThread = null;
            long[] served = {0};
            if (childProcess) {
                child = startChild(shared, plan);
            } else {
                DeviceQueue deviceQueue = kind.device("demo device", memory, queueSize, placement.rings(), DemoRing.FEATURES);
                deviceThread = Thread.ofPlatform().name("demo-device").start(
                        () -> served[0] = DemoDevice.serve(deviceQueue, shared.segment(), batch, payload));
            }
            try {
                awaitReady(shared, child);
                DemoDriver driver = new DemoDriver(driverQueue, shared.segment(), plan);
                Histogram warm = new Histogram(3);
                driver.run(TimeUnit.MILLISECONDS.toNanos(500), batch, queueSize, warm); // JIT warm-up
                Histogram inFlight = new Histogram(3);
                long t0 = System.nanoTime();
                long done = driver.run(TimeUnit.SECONDS.toNanos(seconds), batch, queueSize, inFlight);
                double secs = (System.nanoTime() - t0) / 1e9;
                Histogram pingPong = new Histogram(3);
                driver.run(TimeUnit.MILLISECONDS.toNanos(Math.max(500, seconds * 300L)), 1, 1, pingPong);
                DemoRing.set(shared.segment(), DemoRing.STOP, 1);
                boolean deviceOk = awaitDevice(child, deviceThread);
                long deviceServed = DemoRing.get(shared.segment(), DemoRing.SERVED);
                boolean counted = deviceServed == driver.submitted();
                double rate = done / secs;
                System.out.printf(Locale.ROOT, "%-7s %-14s %12s %9.0f   %-28s %-28s%s%n",
                        kind.name().toLowerCase(), childProcess ? "child process" : "thread",
                        String.format(Locale.ROOT, "%,.0f", rate), rate * payload / 1e6,
                        percentiles(inFlight), percentiles(pingPong),
                        deviceOk && counted ? "" : "  FAILED: device " + (deviceOk ? "served " + deviceServed
                                + " of " + driver.submitted() : "reported an error"));
                return deviceOk && counted;
            } finally {
                DemoRing.set(shared.segment(), DemoRing.STOP, 1);
                if (child != null && child.isAlive()) {
                    child.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
                }
                if (deviceThread != null) {
                    deviceThread.join(5000);
                }
            }
        }
    }

    private static String percentiles(Histogram h) {
        return String.format(Locale.ROOT, "%s/%s/%s", micros(h.getValueAtPercentile(50)), micros(h.getValueAtPercentile(99)),
                micros(h.getValueAtPercentile(99.9)));
    }

    private static String micros(long nanos) {
        return nanos < 10_000 ? String.format(Locale.ROOT, "%.2fus", nanos / 1000.0) : String.format(Locale.ROOT, "%.0fus", nanos / 1000.0);
    }

    private Process startChild(SharedMemory shared, DemoRing plan) throws IOException {
        String java = ProcessHandle.current().info().command().orElse("java");
        List<String> cmd = new ArrayList<>(List.of(java, "--enable-native-access=ALL-UNNAMED",
                "--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED",
                "-cp", System.getProperty("java.class.path"), DemoDevice.class.getName(),
                "/proc/" + Libc.getpid() + "/fd/" + shared.fd(), Long.toString(shared.size()), Integer.toString(batch)));
        cmd.addAll(List.of(plan.args()));
        return new ProcessBuilder(cmd).inheritIO().start();
    }

    private static void awaitReady(SharedMemory shared, Process child) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (DemoRing.get(shared.segment(), DemoRing.READY) == 0) {
            if (child != null && !child.isAlive()) {
                throw new IllegalStateException("the device process exited with " + child.exitValue() + " before it started");
            }
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("the device did not start within 30 s");
            }
            Thread.sleep(1);
        }
    }

    private static boolean awaitDevice(Process child, Thread deviceThread) throws InterruptedException {
        if (child != null) {
            return child.waitFor(30, TimeUnit.SECONDS) && child.exitValue() == 0;
        }
        deviceThread.join(30_000);
        return !deviceThread.isAlive();
    }
}
