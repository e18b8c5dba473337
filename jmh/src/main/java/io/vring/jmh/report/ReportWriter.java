package io.vring.jmh.report;

import org.jfree.chart.ChartFactory;
import org.jfree.chart.ChartUtils;
import org.jfree.chart.JFreeChart;
import org.jfree.chart.axis.LogAxis;
import org.jfree.chart.plot.CategoryPlot;
import org.jfree.chart.plot.PlotOrientation;
import org.jfree.data.category.DefaultCategoryDataset;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.TreeSet;

/**
 * Turns one run's {@code jmh.json} into {@code report.md} (every vring figure next to its peer's
 * figure from the same run, and their ratio; machine and JDK; B/op when {@code -prof gc} ran) and
 * two PNG plots drawn with JFreeChart ({@code throughput.png}, {@code latency.png}).
 *
 * <p>Usage: {@code ReportWriter <results-dir>}; reads {@code jmh.json} and, if present,
 * {@code command.txt} (the command line of the run) from that folder. Run headless
 * ({@code -Djava.awt.headless=true}).
 */
public final class ReportWriter {
    /** Goals from the benchmark issue. */
    static final double GOAL_VS_JCTOOLS = 0.5, GOAL_VS_AGRONA = 3.0, GOAL_RTT_P50 = 1.5;
    /** Issue 6: vsock stream throughput at least half a plain UNIX socket pair's. */
    static final double GOAL_VSOCK_VS_SOCKETPAIR = 0.5;
    /** Bytes one VsockStreams throughput op moves (VsockStreams.BLOCK). */
    static final int VSOCK_BLOCK = 64 * 1024;

    /** One JMH result: benchmark as {@code Class.method}, its params, primary and secondary metrics. */
    record Result(String benchmark, Map<String, String> params, String mode, double score, double error,
                  String unit, Map<String, Double> percentiles, Map<String, double[]> secondary) {
        String param(String name) {
            return params.getOrDefault(name, "");
        }

        /** Score of secondary metric {@code name}, or NaN. */
        double secondaryScore(String name) {
            double[] m = secondary.get(name);
            return m == null ? Double.NaN : m[0];
        }

        double secondaryError(String name) {
            double[] m = secondary.get(name);
            return m == null ? Double.NaN : m[1];
        }

        double percentile(String p) {
            return percentiles.getOrDefault(p, Double.NaN);
        }
    }

    public static void main(String[] args) throws IOException {
        if (args.length != 1) {
            System.err.println("usage: ReportWriter <results-dir>");
            System.exit(2);
        }
        Path dir = Path.of(args[0]);
        Path report = write(dir);
        System.out.println("report: " + report.toAbsolutePath());
    }

    /** Reads {@code dir/jmh.json}, writes the report and plots into {@code dir}; returns the report's path. */
    public static Path write(Path dir) throws IOException {
        List<Result> results = read(Files.readString(dir.resolve("jmh.json")));
        Path command = dir.resolve("command.txt");
        String commandLine = Files.exists(command) ? Files.readString(command).strip() : null;
        List<String> plots = new ArrayList<>();
        if (plotThroughput(results, dir.resolve("throughput.png"))) {
            plots.add("throughput.png");
        }
        if (plotLatency(results, dir.resolve("latency.png"))) {
            plots.add("latency.png");
        }
        Path report = dir.resolve("report.md");
        Files.writeString(report, markdown(results, commandLine, machine(), plots));
        return report;
    }

    @SuppressWarnings("unchecked")
    static List<Result> read(String json) {
        List<Result> results = new ArrayList<>();
        for (Object o : (List<Object>) Json.parse(json)) {
            Map<String, Object> r = (Map<String, Object>) o;
            String full = (String) r.get("benchmark");
            String[] parts = full.split("\\.");
            String name = parts.length >= 2 ? parts[parts.length - 2] + "." + parts[parts.length - 1] : full;
            Map<String, String> params = new LinkedHashMap<>();
            Object p = r.get("params");
            if (p instanceof Map<?, ?> m) {
                m.forEach((k, v) -> params.put((String) k, String.valueOf(v)));
            }
            Map<String, Object> primary = (Map<String, Object>) r.get("primaryMetric");
            Map<String, Double> percentiles = new LinkedHashMap<>();
            if (primary.get("scorePercentiles") instanceof Map<?, ?> pm) {
                pm.forEach((k, v) -> percentiles.put((String) k, Json.number(v)));
            }
            Map<String, double[]> secondary = new LinkedHashMap<>();
            if (r.get("secondaryMetrics") instanceof Map<?, ?> sm) {
                sm.forEach((k, v) -> {
                    Map<String, Object> metric = (Map<String, Object>) v;
                    secondary.put((String) k, new double[] {Json.number(metric.get("score")),
                            Json.number(metric.get("scoreError"))});
                });
            }
            results.add(new Result(name, params, (String) r.get("mode"), Json.number(primary.get("score")),
                    Json.number(primary.get("scoreError")), (String) primary.get("scoreUnit"), percentiles,
                    secondary));
            if (results.size() == 1) {
                jdk = r.get("vmName") + " " + r.get("vmVersion") + " (JDK " + r.get("jdkVersion") + ")";
                jvmArgs = String.valueOf(r.get("jvmArgs"));
            }
        }
        return results;
    }

    private static String jdk = "unknown";
    private static String jvmArgs = "";

    static String markdown(List<Result> results, String commandLine, String machine, List<String> plots) {
        StringBuilder md = new StringBuilder();
        md.append("# vring benchmark report\n\n");
        md.append("- Machine: ").append(machine).append('\n');
        md.append("- JVM: ").append(jdk).append('\n');
        md.append("- JVM args of the forks: `").append(jvmArgs).append("`\n");
        if (commandLine != null) {
            md.append("- Command: `").append(commandLine).append("`\n");
        }
        md.append("- Pinning: driver/producer/ping thread on CPU 0, device/consumer/echo thread on CPU 1 "
                + "(sched_setaffinity per thread, see `# vring:` lines in jmh.log); back-end processes of the blk and "
                + "set-up benchmarks under taskset on CPU 1 (testpmd: EAL places its lcores on all CPUs)\n");
        boolean gc = results.stream().anyMatch(r -> r.secondary.containsKey("gc.alloc.rate.norm"));
        md.append("- Allocation profiler: ").append(gc ? "`-prof gc` on (B/op column)" : "off (no B/op)").append("\n\n");
        md.append("Each element is a 64-byte payload the producer writes into the shared buffer and the "
                + "consumer copies out (docs/PERFORMANCE.md, \"The transfer\"). Errors are JMH's 99.9% "
                + "confidence half-widths; on a noisy 2-CPU machine treat single-run ratios as ballpark.\n\n");

        throughputTable(results, md, gc);
        latencyTable(results, md, gc);
        controlPlaneTable(results, md);
        setupTable(results, md);
        blkTable(results, md, gc);
        inflightTable(results, md);
        vsockTable(results, md, gc);
        notificationTable(results, md);
        goals(results, md, gc);
        for (String plot : plots) {
            md.append("![").append(plot).append("](").append(plot).append(")\n\n");
        }
        return md.toString();
    }

    private static void throughputTable(List<Result> results, StringBuilder md, boolean gc) {
        List<Result> rings = find(results, "RingThroughput.ring");
        if (rings.isEmpty()) {
            return;
        }
        md.append("## Throughput (elements/s, busy-poll, queue size 256)\n\n");
        md.append("| ring | batch | features | vring Melem/s | JCTools SpscArrayQueue Melem/s | × JCTools "
                + "| Agrona OneToOneRingBuffer Melem/s | × Agrona |").append(gc ? " vring B/op |" : "").append('\n');
        md.append("|---|---:|---|---:|---:|---:|---:|---:|").append(gc ? "---:|" : "").append('\n');
        for (Result r : rings) {
            double v = r.secondaryScore("transfers");
            Optional<Result> jc = peer(results, "RingThroughput.jctools", r.param("batch"));
            Optional<Result> ag = peer(results, "RingThroughput.agrona", r.param("batch"));
            md.append("| ").append(r.param("ring")).append(" | ").append(r.param("batch")).append(" | ")
                    .append(r.param("features")).append(" | ").append(mega(v, r.secondaryError("transfers")))
                    .append(" | ").append(jc.map(p -> mega(p.secondaryScore("transfers"), p.secondaryError("transfers"))).orElse("–"))
                    .append(" | ").append(jc.map(p -> ratio(v, p.secondaryScore("transfers"))).orElse("–"))
                    .append(" | ").append(ag.map(p -> mega(p.secondaryScore("transfers"), p.secondaryError("transfers"))).orElse("–"))
                    .append(" | ").append(ag.map(p -> ratio(v, p.secondaryScore("transfers"))).orElse("–")).append(" |");
            if (gc) {
                md.append(' ').append(bytes(r.secondaryScore("gc.alloc.rate.norm"))).append(" |");
            }
            md.append('\n');
        }
        if (gc) {
            md.append("\nPeers' B/op: ");
            List<String> peers = new ArrayList<>();
            for (Result p : results) {
                if (p.benchmark.equals("RingThroughput.jctools") || p.benchmark.equals("RingThroughput.agrona")) {
                    peers.add(p.benchmark.substring(p.benchmark.indexOf('.') + 1) + " batch " + p.param("batch")
                            + " " + bytes(p.secondaryScore("gc.alloc.rate.norm")));
                }
            }
            md.append(String.join(", ", peers)).append(". B/op is per group operation (one invocation of "
                    + "each side).\n");
        }
        md.append('\n');
    }

    private static void latencyTable(List<Result> results, StringBuilder md, boolean gc) {
        List<Result> rings = find(results, "RingLatency.ring");
        if (rings.isEmpty()) {
            return;
        }
        md.append("## Round trip (64-byte request + 64-byte reply, ns)\n\n");
        md.append("| ring | wake | vring p50 | p99 | p99.9 | peer | peer p50 | p99 | p99.9 | p50 ratio |")
                .append(gc ? " vring B/op |" : "").append('\n');
        md.append("|---|---|---:|---:|---:|---|---:|---:|---:|---:|").append(gc ? "---:|" : "").append('\n');
        for (Result r : rings) {
            boolean busy = r.param("wake").equals("busy");
            String peerName = busy ? "JCTools ping-pong" : "bare eventfd ping-pong";
            Optional<Result> peer = find(results, busy ? "RingLatency.jctools" : "NotificationCost.eventfd").stream().findFirst();
            md.append("| ").append(r.param("ring")).append(" | ").append(r.param("wake")).append(" | ")
                    .append(ns(r.percentile("50.0"))).append(" | ").append(ns(r.percentile("99.0"))).append(" | ")
                    .append(ns(r.percentile("99.9"))).append(" | ").append(peerName).append(" | ")
                    .append(peer.map(p -> ns(p.percentile("50.0"))).orElse("–")).append(" | ")
                    .append(peer.map(p -> ns(p.percentile("99.0"))).orElse("–")).append(" | ")
                    .append(peer.map(p -> ns(p.percentile("99.9"))).orElse("–")).append(" | ")
                    .append(peer.map(p -> ratio(r.percentile("50.0"), p.percentile("50.0"))).orElse("–")).append(" |");
            if (gc) {
                md.append(' ').append(bytes(r.secondaryScore("gc.alloc.rate.norm"))).append(" |");
            }
            md.append('\n');
        }
        md.append('\n');
    }

    /** InflightOverhead: the same ring transfer with the device's inflight tracking off and on. */
    private static void inflightTable(List<Result> results, StringBuilder md) {
        List<Result> off = find(results, "InflightOverhead.ring").stream().filter(r -> "off".equals(r.param("inflight"))).toList();
        if (off.isEmpty()) {
            return;
        }
        md.append("## Inflight tracking overhead (ring elements/s, busy-poll)\n\n");
        md.append("| ring | batch | untracked Melem/s | tracked Melem/s | tracked / untracked |\n|---|---:|---:|---:|---:|\n");
        for (Result r : off) {
            Optional<Result> on = find(results, r.benchmark).stream()
                    .filter(o -> "on".equals(o.param("inflight")) && o.param("ring").equals(r.param("ring"))
                            && o.param("batch").equals(r.param("batch")))
                    .findFirst();
            double v = r.secondaryScore("transfers");
            md.append("| ").append(r.param("ring")).append(" | ").append(r.param("batch")).append(" | ")
                    .append(mega(v, r.secondaryError("transfers"))).append(" | ")
                    .append(on.map(o -> mega(o.secondaryScore("transfers"), o.secondaryError("transfers"))).orElse("–"))
                    .append(" | ").append(on.map(o -> ratio(o.secondaryScore("transfers"), v)).orElse("–")).append(" |\n");
        }
        md.append('\n');
    }

    /**
     * VsockStreams: guest-to-host and host-to-guest stream throughput through the Java driver, the
     * device and BackendServer, next to a UNIX socket pair moving the same 64 KiB writes; connection
     * set-ups per second next to a UNIX connect + accept + close.
     */
    private static void vsockTable(List<Result> results, StringBuilder md, boolean gc) {
        List<Result> up = find(results, "VsockStreams.guestToHost");
        List<Result> down = find(results, "VsockStreams.hostToGuest");
        Optional<Result> pairWrite = find(results, "VsockStreams.pairWrite").stream().findFirst();
        Optional<Result> pairRead = find(results, "VsockStreams.pairRead").stream().findFirst();
        if (!up.isEmpty() || !down.isEmpty()) {
            md.append("## vsock streams (64 KiB writes, Gbit/s; Java driver → vhost-user → VsockDevice → UNIX socket)\n\n");
            md.append("| direction | ring | vring Gbit/s | UNIX socket pair Gbit/s | × socket pair |")
                    .append(gc ? " vring B/op | pair B/op |" : "").append('\n');
            md.append("|---|---|---:|---:|---:|").append(gc ? "---:|---:|" : "").append('\n');
            for (Result r : concat(up, down)) {
                boolean guestToHost = r.benchmark.endsWith("guestToHost");
                Optional<Result> pair = guestToHost ? pairWrite : pairRead;
                md.append("| ").append(guestToHost ? "guest → host" : "host → guest").append(" | ")
                        .append(r.param("ring")).append(" | ").append(gbit(r.score, r.error)).append(" | ")
                        .append(pair.map(p -> gbit(p.score, p.error)).orElse("–")).append(" | ")
                        .append(pair.map(p -> ratio(r.score, p.score)).orElse("–")).append(" |");
                if (gc) {
                    md.append(' ').append(bytes(r.secondaryScore("gc.alloc.rate.norm"))).append(" | ")
                            .append(pair.map(p -> bytes(p.secondaryScore("gc.alloc.rate.norm"))).orElse("–")).append(" |");
                }
                md.append('\n');
            }
            md.append('\n');
        }
        List<Result> setups = concat(find(results, "VsockStreams.guestConnect"), find(results, "VsockStreams.hostConnect"));
        Optional<Result> pairConnect = find(results, "VsockStreams.pairConnect").stream().findFirst();
        if (!setups.isEmpty()) {
            md.append("## vsock connection set-up (connect + accept + close, per second)\n\n");
            md.append("| who connects | ring | vring /s | UNIX connect + accept + close /s | × UNIX |\n|---|---|---:|---:|---:|\n");
            for (Result r : setups) {
                md.append("| ").append(r.benchmark.endsWith("guestConnect") ? "guest (REQUEST → host listener)"
                                : "host (CONNECT / OK)").append(" | ").append(r.param("ring")).append(" | ")
                        .append(perSecond(r.score, r.error)).append(" | ")
                        .append(pairConnect.map(p -> perSecond(p.score, p.error)).orElse("–")).append(" | ")
                        .append(pairConnect.map(p -> ratio(r.score, p.score)).orElse("–")).append(" |\n");
            }
            md.append('\n');
        }
    }

    private static List<Result> concat(List<Result> a, List<Result> b) {
        List<Result> all = new ArrayList<>(a);
        all.addAll(b);
        return all;
    }

    /** ops/s of 64 KiB ops as Gbit/s. */
    private static String gbit(double opsPerSecond, double error) {
        double scale = VSOCK_BLOCK * 8 / 1e9;
        return Double.isNaN(error) ? String.format(Locale.ROOT, "%.2f", opsPerSecond * scale)
                : String.format(Locale.ROOT, "%.2f ± %.2f", opsPerSecond * scale, error * scale);
    }

    private static String perSecond(double v, double error) {
        return Double.isNaN(error) ? String.format(Locale.ROOT, "%.0f", v) : String.format(Locale.ROOT, "%.0f ± %.0f", v, error);
    }

    private static void controlPlaneTable(List<Result> results, StringBuilder md) {
        Optional<Result> vring = find(results, "ControlPlane.getFeaturesRoundTrip").stream().findFirst();
        Optional<Result> raw = find(results, "ControlPlane.rawSocketPingPong").stream().findFirst();
        if (vring.isEmpty()) {
            return;
        }
        md.append("## Control plane (one request and its reply, 12 + 20 bytes, ns)\n\n");
        md.append("| path | p50 | p99 | p99.9 | p50 ratio to raw |\n|---|---:|---:|---:|---:|\n");
        for (Result r : List.of(vring, raw).stream().flatMap(Optional::stream).toList()) {
            md.append("| ").append(r == vring.get() ? "GET_FEATURES via Connection + BackendServer"
                            : "raw junixsocket ping-pong").append(" | ")
                    .append(ns(r.percentile("50.0"))).append(" | ").append(ns(r.percentile("99.0"))).append(" | ")
                    .append(ns(r.percentile("99.9"))).append(" | ")
                    .append(raw.map(p -> ratio(r.percentile("50.0"), p.percentile("50.0"))).orElse("–")).append(" |\n");
        }
        md.append('\n');
    }

    /**
     * DeviceSetup: the whole connect → start → one request → disconnect cycle, each vring back-end
     * next to its peer: blk to qemu-storage-daemon's blk (the same device), rng to DPDK's net_vhost
     * (another device: a reference point for the vhost-user stack, not a like-for-like peer).
     */
    private static void setupTable(List<Result> results, StringBuilder md) {
        List<Result> all = find(results, "DeviceSetup.connectStartRequestClose");
        if (all.isEmpty()) {
            return;
        }
        md.append("## Device set-up (connect → rings running → one request used → disconnect, ms)\n\n");
        md.append("| vring back-end | p50 | p99 | peer | peer p50 | peer p99 | p50 ratio |\n|---|---:|---:|---|---:|---:|---:|\n");
        String[][] pairs = {{"vring-blk", "vring blk", "qsd-blk", "qemu-storage-daemon blk"},
                {"vring-rng", "vring rng", "dpdk-net", "DPDK testpmd net_vhost (2 rings, another device)"}};
        for (String[] pair : pairs) {
            Optional<Result> ours = all.stream().filter(r -> r.param("backend").equals(pair[0])).findFirst();
            Optional<Result> peer = all.stream().filter(r -> r.param("backend").equals(pair[2])).findFirst();
            if (ours.isEmpty() && peer.isEmpty()) {
                continue;
            }
            md.append("| ").append(pair[1]).append(" | ")
                    .append(ours.map(r -> ms(r.percentile("50.0"))).orElse("–")).append(" | ")
                    .append(ours.map(r -> ms(r.percentile("99.0"))).orElse("–")).append(" | ")
                    .append(pair[3]).append(" | ")
                    .append(peer.map(p -> ms(p.percentile("50.0"))).orElse("–")).append(" | ")
                    .append(peer.map(p -> ms(p.percentile("99.0"))).orElse("–")).append(" | ")
                    .append(ours.isPresent() && peer.isPresent()
                            ? ratio(ours.get().percentile("50.0"), peer.get().percentile("50.0")) : "–")
                    .append(" |\n");
        }
        md.append("\nA ratio below 1 means vring sets up faster.\n\n");
    }

    /** BlkIops: the same Java front-end against vring blk and qemu-storage-daemon, per op and depth. */
    private static void blkTable(List<Result> results, StringBuilder md, boolean gc) {
        List<Result> ours = find(results, "BlkIops.request").stream().filter(r -> r.param("backend").equals("vring")).toList();
        if (ours.isEmpty()) {
            return;
        }
        md.append("## virtio-blk IOPS (4 KiB random, one Java front-end, image in /dev/shm)\n\n");
        md.append("| op | queue depth | vring blk kIOPS | qemu-storage-daemon kIOPS | × qsd |").append(gc ? " vring B/op |" : "")
                .append('\n');
        md.append("|---|---:|---:|---:|---:|").append(gc ? "---:|" : "").append('\n');
        for (Result r : ours) {
            Optional<Result> qsd = find(results, r.benchmark).stream()
                    .filter(p -> p.param("backend").equals("qsd") && p.param("op").equals(r.param("op"))
                            && p.param("depth").equals(r.param("depth")))
                    .findFirst();
            md.append("| ").append(r.param("op")).append(" | ").append(r.param("depth")).append(" | ")
                    .append(kilo(r.score, r.error)).append(" | ")
                    .append(qsd.map(p -> kilo(p.score, p.error)).orElse("–")).append(" | ")
                    .append(qsd.map(p -> ratio(r.score, p.score)).orElse("–")).append(" |");
            if (gc) {
                md.append(' ').append(bytes(r.secondaryScore("gc.alloc.rate.norm"))).append(" |");
            }
            md.append('\n');
        }
        md.append(gc ? "\nB/op is the front-end's (this JVM's); each back-end runs in its own process.\n\n" : "\n");
    }

    private static void notificationTable(List<Result> results, StringBuilder md) {
        Optional<Result> efd = find(results, "NotificationCost.eventfd").stream().findFirst();
        Optional<Result> busy = find(results, "NotificationCost.busy").stream().findFirst();
        if (efd.isEmpty() && busy.isEmpty()) {
            return;
        }
        md.append("## Notification cost (round trip = two hand-overs, ns)\n\n");
        md.append("| hand-over | mean | p50 | p99 | p99.9 |\n|---|---:|---:|---:|---:|\n");
        for (Result r : List.of(efd, busy).stream().flatMap(Optional::stream).toList()) {
            md.append("| ").append(r.benchmark.substring(r.benchmark.indexOf('.') + 1)).append(" | ")
                    .append(ns(r.score)).append(" ± ").append(ns(r.error)).append(" | ")
                    .append(ns(r.percentile("50.0"))).append(" | ").append(ns(r.percentile("99.0"))).append(" | ")
                    .append(ns(r.percentile("99.9"))).append(" |\n");
        }
        if (efd.isPresent() && busy.isPresent()) {
            md.append("\neventfd / busy at p50: ").append(ratio(efd.get().percentile("50.0"), busy.get().percentile("50.0")))
                    .append("\n");
        }
        md.append('\n');
    }

    private static void goals(List<Result> results, StringBuilder md, boolean gc) {
        md.append("## Goals (ratios from this run)\n\n");
        List<Result> rings = find(results, "RingThroughput.ring");
        if (!rings.isEmpty()) {
            goalRange(results, rings, "RingThroughput.jctools", "JCTools SpscArrayQueue", GOAL_VS_JCTOOLS, md);
            goalRange(results, rings, "RingThroughput.agrona", "Agrona OneToOneRingBuffer", GOAL_VS_AGRONA, md);
        }
        Optional<Result> jc = find(results, "RingLatency.jctools").stream().findFirst();
        for (Result r : find(results, "RingLatency.ring")) {
            if (r.param("wake").equals("busy") && jc.isPresent()) {
                double ratio = r.percentile("50.0") / jc.get().percentile("50.0");
                md.append("- Busy-poll RTT p50 ≤ ").append(GOAL_RTT_P50).append("× JCTools ping-pong, ")
                        .append(r.param("ring")).append(": ").append(String.format(Locale.ROOT, "%.2f×", ratio))
                        .append(ratio <= GOAL_RTT_P50 ? " — met" : " — not met").append('\n');
            }
        }
        vsockGoal(results, md);
        if (gc) {
            // Throughput benchmarks count per element; sampled ones (SampleTime round trips) also carry
            // JMH's end-of-iteration statistics (boxed Doubles, result serialization: a few MB per
            // iteration, seen in an async-profiler alloc profile), which a slow operation spreads
            // over few operations. Both are shown; the goal is judged on the per-element figure.
            double perElement = 0;
            double sampled = 0;
            for (Result r : results) {
                if (r.benchmark.endsWith(".ring")) {
                    double b = r.secondaryScore("gc.alloc.rate.norm");
                    if ("sample".equals(r.mode)) {
                        sampled = Math.max(sampled, b);
                    } else {
                        perElement = Math.max(perElement, b);
                    }
                }
            }
            md.append("- 0 B/op on vring data-path benchmarks: throughput (per element) largest ").append(bytes(perElement))
                    .append(perElement < 0.5 ? " — met" : " — not met")
                    .append("; sampled round trips largest ").append(bytes(sampled))
                    .append(" (includes JMH's per-iteration statistics; the per-thread proofs are the allocation tests)\n");
        } else {
            md.append("- 0 B/op: not measured in this run (add `--prof-gc`)\n");
        }
        md.append('\n');
    }

    private static void vsockGoal(List<Result> results, StringBuilder md) {
        for (String[] pairing : new String[][] {{"VsockStreams.guestToHost", "VsockStreams.pairWrite", "guest → host"},
                {"VsockStreams.hostToGuest", "VsockStreams.pairRead", "host → guest"}}) {
            Optional<Result> pair = find(results, pairing[1]).stream().findFirst();
            for (Result r : find(results, pairing[0])) {
                if (pair.isEmpty()) {
                    continue;
                }
                double ratio = r.score / pair.get().score;
                md.append(String.format(Locale.ROOT, "- vsock stream %s ≥ %.1f× a UNIX socket pair, %s: %.2f×%s%n",
                        pairing[2], GOAL_VSOCK_VS_SOCKETPAIR, r.param("ring"), ratio,
                        ratio >= GOAL_VSOCK_VS_SOCKETPAIR ? " — met" : " — not met"));
            }
        }
    }

    private static void goalRange(List<Result> results, List<Result> rings, String peerName, String label,
                                  double goal, StringBuilder md) {
        double min = Double.POSITIVE_INFINITY, max = 0;
        String best = "";
        int met = 0, total = 0;
        for (Result r : rings) {
            Optional<Result> peer = peer(results, peerName, r.param("batch"));
            if (peer.isEmpty()) {
                continue;
            }
            double ratio = r.secondaryScore("transfers") / peer.get().secondaryScore("transfers");
            total++;
            if (ratio >= goal) {
                met++;
            }
            min = Math.min(min, ratio);
            if (ratio > max) {
                max = ratio;
                best = r.param("ring") + " batch " + r.param("batch") + " " + r.param("features");
            }
        }
        if (total == 0) {
            return;
        }
        md.append(String.format(Locale.ROOT, "- Elements/s ≥ %.1f× %s: %d of %d configurations met; ratios %.2f× … %.2f× (best: %s)%n",
                goal, label, met, total, min, max, best));
    }

    private static boolean plotThroughput(List<Result> results, Path png) throws IOException {
        List<Result> rings = find(results, "RingThroughput.ring");
        if (rings.isEmpty()) {
            return false;
        }
        DefaultCategoryDataset data = new DefaultCategoryDataset();
        TreeSet<Integer> batches = new TreeSet<>();
        for (Result r : rings) {
            batches.add(Integer.parseInt(r.param("batch")));
        }
        for (Result r : rings) {
            data.addValue(r.secondaryScore("transfers") / 1e6, r.param("ring").toLowerCase(Locale.ROOT) + " " + r.param("features"),
                    "batch " + r.param("batch"));
        }
        for (String peer : List.of("jctools", "agrona")) {
            for (Result p : find(results, "RingThroughput." + peer)) {
                data.addValue(p.secondaryScore("transfers") / 1e6, peer.equals("jctools") ? "JCTools SpscArrayQueue"
                        : "Agrona OneToOneRingBuffer", "batch " + p.param("batch"));
            }
        }
        JFreeChart chart = ChartFactory.createBarChart("Elements/s by batch and ring kind (64-byte payload)",
                "batch", "million elements/s", data, PlotOrientation.VERTICAL, true, false, false);
        ChartUtils.saveChartAsPNG(png.toFile(), chart, 1100, 600);
        return true;
    }

    private static boolean plotLatency(List<Result> results, Path png) throws IOException {
        List<Result> series = new ArrayList<>(find(results, "RingLatency.ring"));
        series.addAll(find(results, "RingLatency.jctools"));
        series.addAll(find(results, "NotificationCost.eventfd"));
        series.addAll(find(results, "NotificationCost.busy"));
        if (series.isEmpty()) {
            return false;
        }
        Map<String, String> points = new LinkedHashMap<>();
        points.put("0.0", "min");
        points.put("50.0", "p50");
        points.put("90.0", "p90");
        points.put("99.0", "p99");
        points.put("99.9", "p99.9");
        points.put("99.99", "p99.99");
        DefaultCategoryDataset data = new DefaultCategoryDataset();
        for (Result r : series) {
            String name = r.benchmark.endsWith(".ring") ? "vring " + r.param("ring").toLowerCase(Locale.ROOT) + " " + r.param("wake")
                    : r.benchmark.equals("RingLatency.jctools") ? "JCTools ping-pong" : "bare " + r.benchmark.substring(r.benchmark.indexOf('.') + 1);
            points.forEach((key, label) -> {
                double v = r.percentile(key);
                if (v > 0) {
                    data.addValue(v, name, label);
                }
            });
        }
        JFreeChart chart = ChartFactory.createLineChart("Round-trip time percentiles (64-byte request + reply)",
                "percentile", "ns", data, PlotOrientation.VERTICAL, true, false, false);
        CategoryPlot plot = chart.getCategoryPlot();
        LogAxis axis = new LogAxis("ns (log scale)");
        axis.setSmallestValue(10);
        plot.setRangeAxis(axis);
        ChartUtils.saveChartAsPNG(png.toFile(), chart, 1100, 600);
        return true;
    }

    private static List<Result> find(List<Result> results, String benchmark) {
        return results.stream().filter(r -> r.benchmark.equals(benchmark)).toList();
    }

    private static Optional<Result> peer(List<Result> results, String benchmark, String batch) {
        return results.stream().filter(r -> r.benchmark.equals(benchmark) && r.param("batch").equals(batch)).findFirst();
    }

    static String machine() {
        String model = "unknown CPU";
        try {
            model = Files.readAllLines(Path.of("/proc/cpuinfo")).stream().filter(l -> l.startsWith("model name"))
                    .findFirst().map(l -> l.substring(l.indexOf(':') + 1).strip()).orElse(model);
        } catch (IOException | RuntimeException e) {
            // not Linux, or no cpuinfo: keep "unknown CPU"
        }
        return Runtime.getRuntime().availableProcessors() + " CPUs (nproc), " + model + ", "
                + System.getProperty("os.name") + " " + System.getProperty("os.version") + " " + System.getProperty("os.arch");
    }

    private static String mega(double v, double err) {
        if (Double.isNaN(v)) {
            return "–";
        }
        return Double.isNaN(err) ? String.format(Locale.ROOT, "%.2f", v / 1e6)
                : String.format(Locale.ROOT, "%.2f ± %.2f", v / 1e6, err / 1e6);
    }

    /** Nanoseconds as milliseconds. */
    private static String ms(double nanos) {
        return Double.isNaN(nanos) ? "–" : String.format(Locale.ROOT, "%.2f ms", nanos / 1e6);
    }

    private static String kilo(double v, double err) {
        if (Double.isNaN(v)) {
            return "–";
        }
        return Double.isNaN(err) ? String.format(Locale.ROOT, "%.1f", v / 1e3)
                : String.format(Locale.ROOT, "%.1f ± %.1f", v / 1e3, err / 1e3);
    }

    private static String ratio(double a, double b) {
        return Double.isNaN(a) || Double.isNaN(b) || b == 0 ? "–" : String.format(Locale.ROOT, "%.2f×", a / b);
    }

    private static String ns(double v) {
        if (Double.isNaN(v)) {
            return "–";
        }
        return v >= 100_000 ? String.format(Locale.ROOT, "%.0f µs", v / 1000) : String.format(Locale.ROOT, "%.0f", v);
    }

    private static String bytes(double v) {
        return Double.isNaN(v) ? "–" : String.format(Locale.ROOT, "%.1f", v);
    }

    private ReportWriter() {
    }
}
