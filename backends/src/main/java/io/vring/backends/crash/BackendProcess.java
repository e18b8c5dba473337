package io.vring.backends.crash;

import io.vring.engine.os.Libc;
import io.vring.engine.os.NativeCallException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * One incarnation of a back-end in a child JVM, its output in a log file, so that a test can kill it
 * with {@code kill -9} of its pid: the crash test's {@link CrashBackend}, or any back-end's command
 * line ({@link #start(Path, int, Class, List)}, e.g. {@code vring blk} under a real QEMU).
 */
public final class BackendProcess implements AutoCloseable {
    private final Process process;
    private final Path log;
    private final int generation;

    private BackendProcess(Process process, Path log, int generation) {
        this.process = process;
        this.log = log;
        this.generation = generation;
    }

    /** Starts generation {@code generation} on {@code socket} with its crash point. */
    static BackendProcess start(Path socket, int generation, CrashPoint point, long armAfter, long seed,
                                boolean inflight) throws IOException {
        List<String> args = new ArrayList<>(List.of(
                "--socket", socket.toString(), "--generation", Integer.toString(generation),
                "--point", point.cliName(), "--arm-after", Long.toString(armAfter), "--seed", Long.toString(seed)));
        if (!inflight) {
            args.add("--no-inflight");
        }
        return start(socket.resolveSibling("backend-g" + generation + ".log"), generation, CrashBackend.class, args);
    }

    /**
     * Starts generation {@code generation}: {@code main} of {@code mainClass} with {@code args}, on this
     * JVM's class path, its standard output and error (the server's log included) in {@code log}.
     */
    public static BackendProcess start(Path log, int generation, Class<?> mainClass, List<String> args) throws IOException {
        String java = ProcessHandle.current().info().command()
                .orElseThrow(() -> new IllegalStateException("cannot tell which java binary runs this JVM"));
        List<String> command = new ArrayList<>(List.of(java,
                "--enable-native-access=ALL-UNNAMED", "--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED",
                "--sun-misc-unsafe-memory-access=allow",
                // A small, quick-starting JVM: it is started once per trial on a shared machine.
                "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto",
                "-cp", System.getProperty("java.class.path"), mainClass.getName()));
        command.addAll(args);
        Process process = new ProcessBuilder(command).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        return new BackendProcess(process, log, generation);
    }

    public int generation() {
        return generation;
    }

    public long pid() {
        return process.pid();
    }

    public boolean isAlive() {
        return process.isAlive();
    }

    /** {@code kill -9 <pid>}, from the front-end. A process already gone is not an error. */
    public void killNine() {
        try {
            Libc.kill((int) process.pid(), Libc.SIGKILL);
        } catch (NativeCallException e) {
            if (process.isAlive()) {
                throw e;
            }
        }
    }

    /** Waits for the process to end; its exit status (137 after SIGKILL), or -1 if it is still running. */
    public int awaitExit(long timeoutMillis) throws InterruptedException {
        return process.waitFor(timeoutMillis, TimeUnit.MILLISECONDS) ? process.exitValue() : -1;
    }

    /** The lines the process printed (its own crash-point notes, the server's log). */
    public List<String> logLines() {
        try {
            return Files.readAllLines(log);
        } catch (IOException e) {
            return List.of("(cannot read " + log + ": " + e.getMessage() + ")");
        }
    }

    /** Kills the process if it still runs and waits for it. */
    @Override
    public void close() {
        if (process.isAlive()) {
            killNine();
            try {
                process.waitFor(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }
}
