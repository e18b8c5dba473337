package io.vring.backends.bench;

import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.net.URISyntaxException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

/**
 * {@code vring bench}: runs the JMH suites ({@code jmh/target/benchmarks.jar}, built with Maven if
 * missing) in a child JVM, streams its output live, keeps the JSON under
 * {@code results/<date>-<commit>/}, then runs the report writer (another child JVM) for
 * {@code report.md} and the PNG plots. The backends module does not depend on jmh: the jar is
 * found on disk, and both children run on the same java binary as this process.
 */
@Command(
        name = "bench",
        mixinStandardHelpOptions = true,
        description = {"Run the JMH suites (vring and its peers in the same run: JCTools, Agrona, qemu-storage-daemon, DPDK testpmd),",
                "keep the results under results/<date>-<commit>/ and write report.md with plots."})
public final class BenchCommand implements Callable<Integer> {
    /** Flags every child JVM needs (FFM, Agrona's Unsafe access, JCTools' Unsafe warning). */
    static final List<String> JVM_FLAGS = List.of("--enable-native-access=ALL-UNNAMED", "--add-exports",
            "java.base/jdk.internal.misc=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow");

    /**
     * Quick run: about seven minutes on 2 cores. Measurement iterations are 2 s: with 1 s ones the
     * JMH error on this kind of machine was larger than the score. The blk IOPS benchmark runs its
     * reads only (writes are in --full): each of its configurations starts a back-end process.
     */
    static final List<String> QUICK = List.of("-f", "1", "-wi", "2", "-i", "4", "-w", "1s", "-r", "2s",
            "-p", "features=none,event_idx+in_order", "-p", "op=read");
    /** Peers the jmh suites start as processes; a missing one leaves its rows of the report empty. */
    static final List<String[]> PEERS = List.<String[]>of(
            new String[] {"/usr/bin/qemu-storage-daemon", "qemu-system-common", "BlkIops, DeviceSetup qsd-blk"},
            new String[] {"/usr/bin/dpdk-testpmd", "dpdk", "DeviceSetup dpdk-net"});
    /** Full matrix: every parameter, more and longer iterations, two forks. */
    static final List<String> FULL = List.of("-f", "2", "-wi", "3", "-i", "5", "-w", "2s", "-r", "2s");

    @Option(names = "--full", description = "Run the whole parameter matrix with longer iterations (tens of minutes).")
    boolean full;

    @Option(names = "--prof-gc", description = "Add JMH's GC profiler (-prof gc): the report shows B/op.")
    boolean profGc;

    @Option(names = "--profile", description = {"Add async-profiler (JMH -prof async, CPU samples every 1 ms, per thread):",
            "a text summary and a flame graph per benchmark under <results>/profile/. Its library is",
            "unpacked by the jmh build to jmh/target/async-profiler/."})
    boolean profile;

    @Option(names = "--results", description = "Folder for result sets (default: <repo>/results).")
    Path results;

    @Option(names = "--jar", description = "The JMH jar (default: <repo>/jmh/target/benchmarks.jar, built if missing).")
    Path jar;

    @Parameters(paramLabel = "JMH_ARG", description = "Extra JMH arguments after --, e.g. -- 'RingLatency' -p ring=SPLIT")
    List<String> jmhArgs = new ArrayList<>();

    @Override
    public Integer call() throws Exception {
        long start = System.nanoTime();
        Path repo = repository();
        String java = ProcessHandle.current().info().command().orElse("java");
        Path benchmarks = jar != null ? jar : repo.resolve("jmh/target/benchmarks.jar");
        if (!Files.exists(benchmarks)) {
            if (jar != null) {
                System.err.println("vring bench: " + benchmarks + " does not exist");
                return 1;
            }
            System.out.println("vring bench: building " + repo.relativize(benchmarks) + " ...");
            Path javaHome = Path.of(java).toAbsolutePath().getParent().getParent();
            ProcessBuilder mvn = new ProcessBuilder("./mvnw", "-q", "-B", "-DskipTests", "package", "-pl", "jmh", "-am")
                    .directory(repo.toFile()).inheritIO();
            mvn.environment().put("JAVA_HOME", javaHome.toString());
            if (mvn.start().waitFor() != 0 || !Files.exists(benchmarks)) {
                System.err.println("vring bench: build failed; run ./mvnw -B -DskipTests package -pl jmh -am");
                return 1;
            }
        }
        String stamp = LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyy-MM-dd-HHmm"));
        Path out = (results != null ? results : repo.resolve("results")).resolve(stamp + "-" + commit(repo));
        Files.createDirectories(out);

        List<String> command = new ArrayList<>();
        command.add(java);
        command.addAll(JVM_FLAGS);
        command.add("-jar");
        command.add(benchmarks.toString());
        command.addAll(full ? FULL : QUICK);
        if (profGc) {
            command.addAll(List.of("-prof", "gc"));
        }
        if (profile) {
            Path library = profilerLibrary(benchmarks);
            if (library == null) {
                System.err.println("vring bench: --profile needs async-profiler's library next to the jar ("
                        + PROFILER_LIBRARY + "); rebuild with ./mvnw -B -DskipTests package -pl jmh -am");
                return 1;
            }
            // cpu = perf_events' cpu-clock: a software event, so it works in a VM without hardware counters.
            command.addAll(List.of("-prof", "async:libPath=" + library + ";event=cpu;interval=1000000;threads=true"
                    + ";output=text,flamegraph;direction=forward;dir=" + out.resolve("profile")));
        }
        command.addAll(List.of("-rf", "json", "-rff", out.resolve("jmh.json").toString()));
        command.addAll(jmhArgs.isEmpty() ? List.of("io.vring.jmh.") : jmhArgs);
        String commandLine = "vring bench" + (full ? " --full" : "") + (profGc ? " --prof-gc" : "") + (profile ? " --profile" : "")
                + (jmhArgs.isEmpty() ? "" : " -- " + String.join(" ", jmhArgs)) + "  =>  " + String.join(" ", command);
        Files.writeString(out.resolve("command.txt"), commandLine + "\n");
        System.out.println("vring bench: results in " + out);
        System.out.println("vring bench: pinning driver/producer threads to CPU 0 and device/consumer threads to CPU 1"
                + " (" + Runtime.getRuntime().availableProcessors() + " CPUs online)");
        System.out.println("vring bench: " + String.join(" ", command));
        for (String[] peer : PEERS) {
            System.out.println("vring bench: peer " + peer[0] + (Files.isExecutable(Path.of(peer[0])) ? ": found"
                    : ": MISSING (apt-get install " + peer[1] + "); " + peer[2] + " will fail and its report rows stay empty"));
        }

        int rc = runStreaming(command, repo, out.resolve("jmh.log"));
        if (rc != 0) {
            System.err.println("vring bench: JMH exited with " + rc + "; log in " + out.resolve("jmh.log"));
            return rc;
        }
        List<String> report = new ArrayList<>(List.of(java, "-Djava.awt.headless=true"));
        report.addAll(JVM_FLAGS);
        report.addAll(List.of("-cp", benchmarks.toString(), "io.vring.jmh.report.ReportWriter", out.toString()));
        rc = runStreaming(report, repo, null);
        Duration took = Duration.ofNanos(System.nanoTime() - start);
        if (profile) {
            System.out.println("vring bench: profiles (summary-cpu.txt, flame-cpu-forward.html) per benchmark in "
                    + out.resolve("profile"));
        }
        System.out.printf("vring bench: done in %dm%02ds; report %s%n", took.toMinutes(), took.toSecondsPart(),
                out.resolve("report.md"));
        return rc;
    }

    /** Where the jmh build unpacks async-profiler's library, relative to the folder of benchmarks.jar. */
    static final String PROFILER_LIBRARY = "async-profiler/linux-x64/libasyncProfiler.so";

    /** async-profiler's library beside {@code benchmarks}, or null when the build did not unpack it. */
    static Path profilerLibrary(Path benchmarks) {
        Path library = benchmarks.toAbsolutePath().resolveSibling(PROFILER_LIBRARY);
        return Files.isReadable(library) ? library : null;
    }

    /** Runs {@code command}, copying each output line to the terminal as it comes (and to {@code log}). */
    private static int runStreaming(List<String> command, Path dir, Path log) throws IOException, InterruptedException {
        Process process = new ProcessBuilder(command).directory(dir.toFile()).redirectErrorStream(true).start();
        try (BufferedReader lines = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8));
             PrintWriter copy = log == null ? null : new PrintWriter(Files.newBufferedWriter(log))) {
            String line;
            while ((line = lines.readLine()) != null) {
                System.out.println(line);
                if (copy != null) {
                    copy.println(line);
                }
            }
        }
        return process.waitFor();
    }

    /**
     * The repository root: the folder above {@code backends/target/vring.jar} when run from the jar,
     * else the current directory or the nearest parent holding {@code jmh/pom.xml}.
     */
    static Path repository() {
        try {
            Path code = Path.of(BenchCommand.class.getProtectionDomain().getCodeSource().getLocation().toURI());
            for (Path p = code.toAbsolutePath(); p != null; p = p.getParent()) {
                if (Files.exists(p.resolve("jmh/pom.xml"))) {
                    return p;
                }
            }
        } catch (URISyntaxException | RuntimeException e) {
            // fall back to the working directory
        }
        for (Path p = Path.of("").toAbsolutePath(); p != null; p = p.getParent()) {
            if (Files.exists(p.resolve("jmh/pom.xml"))) {
                return p;
            }
        }
        return Path.of("").toAbsolutePath();
    }

    /** Short commit hash of the repository, with "-dirty" if the work tree has changes, or "nogit". */
    static String commit(Path repo) {
        String hash = git(repo, "rev-parse", "--short", "HEAD");
        if (hash == null) {
            return "nogit";
        }
        String status = git(repo, "status", "--porcelain", "--untracked-files=no");
        return status != null && !status.isBlank() ? hash + "-dirty" : hash;
    }

    private static String git(Path repo, String... args) {
        List<String> command = new ArrayList<>(List.of("git", "-C", repo.toString()));
        command.addAll(List.of(args));
        try {
            Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).strip();
            return p.waitFor() == 0 ? out : null;
        } catch (IOException e) {
            return null;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return null;
        }
    }
}
