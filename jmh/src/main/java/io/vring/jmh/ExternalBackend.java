package io.vring.jmh;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A vhost-user back-end in a process of its own, started in a benchmark's trial set-up and stopped
 * in its tear-down: ours ({@code vring blk}, {@code vring rng}: a child JVM on this fork's class
 * path, the same {@code Main} {@code ./vring} runs) or a peer ({@code qemu-storage-daemon},
 * DPDK's {@code dpdk-testpmd}). Each gets a temporary folder for its socket and its log; the
 * benchmark connects to {@link #socket()} once the process listens there.
 *
 * <p><b>Placement.</b> Our back-ends and qemu-storage-daemon run under {@code taskset -c <device
 * CPU>} (1 unless {@code -Dvring.bench.deviceCpu}; none with {@code -Dvring.bench.noPin}): the
 * whole process, all its threads, on the CPU the other benchmarks give the device side, while the
 * benchmark (front-end) thread is pinned to the driver CPU. testpmd places its own threads (EAL:
 * main lcore 0, the forwarding lcore busy-polls CPU 1), as DPDK is always run: it is started under
 * {@code taskset -c <every online CPU>}, since a child inherits the CPU mask of the (pinned) thread
 * that starts it, and EAL with one CPU has no forwarding core.
 *
 * <p>A peer binary that is not installed is a set-up failure that says which package brings it;
 * a back-end that exits or never listens within {@link #LISTEN_TIMEOUT_SECONDS} fails with the
 * tail of its log.
 */
public final class ExternalBackend implements AutoCloseable {
    /** Debian package qemu-system-common (a dependency of qemu-system-x86); QEMU 7.2 on Debian 12. */
    public static final Path QEMU_STORAGE_DAEMON = Path.of("/usr/bin/qemu-storage-daemon");
    /** Debian package dpdk (22.11 on Debian 12). */
    public static final Path DPDK_TESTPMD = Path.of("/usr/bin/dpdk-testpmd");
    static final long LISTEN_TIMEOUT_SECONDS = 30;
    private static final Path TASKSET = Path.of("/usr/bin/taskset");

    private final String name;
    private final Process process;
    private final Path dir;
    private final Path socket;
    private final Path log;
    /** Kills the process if the fork ends without the tear-down (interrupted run): no orphaned daemon. */
    private final Thread orphanGuard;

    private ExternalBackend(String name, Process process, Path dir, Path socket, Path log) {
        this.name = name;
        this.process = process;
        this.dir = dir;
        this.socket = socket;
        this.log = log;
        this.orphanGuard = new Thread(process::destroyForcibly, "vring-bench-kill-" + name);
        Runtime.getRuntime().addShutdownHook(orphanGuard);
    }

    /** {@code vring blk --image <image>}: our block device over an image file, default I/O threads. */
    public static ExternalBackend vringBlk(Path image) {
        return start("vring-blk", true, socket -> vring("blk", "--socket", socket.toString(), "--image", image.toString()));
    }

    /** {@code vring rng}: our entropy device. */
    public static ExternalBackend vringRng() {
        return start("vring-rng", true, socket -> vring("rng", "--socket", socket.toString()));
    }

    /**
     * qemu-storage-daemon exporting {@code image} as a writable vhost-user-blk device with one queue:
     * the file through the page cache ({@code cache.direct=off}, as our {@code FileImage}: pread/pwrite)
     * and QEMU's thread pool for file I/O ({@code aio=threads}); writeback, as ours when FLUSH is negotiated.
     */
    public static ExternalBackend qemuStorageDaemon(Path image) {
        requireInstalled(QEMU_STORAGE_DAEMON, "qemu-system-common (apt-get install qemu-system-common)");
        return start("qsd-blk", true, socket -> List.of(QEMU_STORAGE_DAEMON.toString(),
                "--blockdev", "driver=file,node-name=disk,filename=" + image + ",cache.direct=off,aio=threads",
                "--export", "type=vhost-user-blk,id=vring-bench,node-name=disk,addr.type=unix,addr.path=" + socket
                        + ",writable=on,num-queues=1"));
    }

    /**
     * DPDK testpmd with a {@code net_vhost} port (one queue pair) in rxonly forwarding, no hugepages,
     * no PCI: the set-up of vhost-protocol's DpdkBackendTest. Ring 1 is the device's TX queue.
     */
    public static ExternalBackend dpdkTestpmd() {
        requireInstalled(DPDK_TESTPMD, "dpdk (apt-get install dpdk)");
        return start("dpdk-net", false, socket -> List.of(TASKSET.toString(), "-c", onlineCpus(),
                DPDK_TESTPMD.toString(), "--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--no-telemetry", "--file-prefix=vring-bench" + ProcessHandle.current().pid(),
                "--vdev", "net_vhost0,iface=" + socket + ",queues=1",
                "--", "--forward-mode=rxonly", "--port-topology=loop", "--total-num-mbufs=16384"));
    }

    /** The socket the back-end listens on. */
    public Path socket() {
        return socket;
    }

    public String name() {
        return name;
    }

    /** SIGTERM, up to 10 s to exit, then SIGKILL; removes the socket, log and folder. */
    @Override
    public void close() {
        try {
            Runtime.getRuntime().removeShutdownHook(orphanGuard);
        } catch (IllegalStateException e) {
            // the JVM is shutting down: the hook runs anyway
        }
        process.destroy();
        try {
            if (!process.waitFor(10, TimeUnit.SECONDS)) {
                System.out.println("# vring: " + name + " did not exit on SIGTERM within 10 s: killed");
                process.destroyForcibly();
                process.waitFor(5, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            process.destroyForcibly();
            Thread.currentThread().interrupt();
        }
        try {
            Files.deleteIfExists(socket);
            Files.deleteIfExists(log);
            Files.deleteIfExists(dir);
        } catch (IOException e) {
            System.out.println("# vring: could not remove " + dir + ": " + e);
        }
    }

    @Override
    public String toString() {
        return name + " (pid " + process.pid() + ", " + socket + ")";
    }

    private interface CommandFor {
        List<String> at(Path socket);
    }

    private static ExternalBackend start(String name, boolean pin, CommandFor commandFor) {
        Path dir;
        try {
            dir = Files.createTempDirectory("vring-bench-" + name);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        Path socket = dir.resolve(name + ".sock");
        Path log = dir.resolve(name + ".log");
        List<String> command = new ArrayList<>();
        boolean pinned = pin && !Boolean.getBoolean("vring.bench.noPin") && Files.isExecutable(TASKSET);
        if (pinned) {
            command.addAll(List.of(TASKSET.toString(), "-c", Integer.toString(Affinity.DEVICE_CPU)));
        }
        command.addAll(commandFor.at(socket));
        Process process;
        try {
            process = new ProcessBuilder(command).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        } catch (IOException e) {
            deleteQuietly(dir);
            throw new IllegalStateException("cannot start " + name + ": " + String.join(" ", command) + ": " + e, e);
        }
        ExternalBackend backend = new ExternalBackend(name, process, dir, socket, log);
        try {
            backend.awaitListening();
        } catch (RuntimeException e) {
            backend.close();
            throw e;
        }
        System.out.println("# vring: back-end " + backend + (pinned ? " on CPU " + Affinity.DEVICE_CPU : " not pinned")
                + ": " + String.join(" ", command));
        return backend;
    }

    private void awaitListening() {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(LISTEN_TIMEOUT_SECONDS);
        while (!Files.exists(socket)) {
            if (!process.isAlive()) {
                throw new IllegalStateException(name + " exited with " + process.exitValue() + " before listening on "
                        + socket + "; its output:\n" + logTail());
            }
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException(name + " did not listen on " + socket + " within "
                        + LISTEN_TIMEOUT_SECONDS + " s; its output:\n" + logTail());
            }
            try {
                Thread.sleep(20);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted while waiting for " + name, e);
            }
        }
    }

    private String logTail() {
        try {
            String text = Files.readString(log);
            return text.substring(Math.max(0, text.length() - 2000));
        } catch (IOException e) {
            return "(no log: " + e + ")";
        }
    }

    /** A child JVM running {@code vring <args>} on this fork's class path (the benchmarks jar holds backends). */
    private static List<String> vring(String... args) {
        String java = ProcessHandle.current().info().command()
                .orElseThrow(() -> new IllegalStateException("cannot tell which java binary runs this JVM"));
        List<String> command = new ArrayList<>(List.of(java, "--enable-native-access=ALL-UNNAMED", "--add-exports",
                "java.base/jdk.internal.misc=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow",
                "-cp", absoluteClassPath(), "io.vring.backends.Main"));
        command.addAll(List.of(args));
        return command;
    }

    /** This JVM's class path with every entry absolute, so the child does not depend on its working folder. */
    private static String absoluteClassPath() {
        StringBuilder path = new StringBuilder();
        for (String entry : System.getProperty("java.class.path").split(java.io.File.pathSeparator)) {
            if (!path.isEmpty()) {
                path.append(java.io.File.pathSeparatorChar);
            }
            path.append(Path.of(entry).toAbsolutePath());
        }
        return path.toString();
    }

    /** The online CPUs as taskset reads them ("0-1"), from sysfs: this thread's own mask may be one CPU. */
    private static String onlineCpus() {
        try {
            return Files.readString(Path.of("/sys/devices/system/cpu/online")).strip();
        } catch (IOException e) {
            return "0-" + (Runtime.getRuntime().availableProcessors() - 1);
        }
    }

    private static void requireInstalled(Path binary, String packageHint) {
        if (!Files.isExecutable(binary)) {
            throw new IllegalStateException(binary + " is not installed, so this peer cannot be measured; it comes with "
                    + packageHint + ". The other back-ends' rows run without it.");
        }
    }

    private static void deleteQuietly(Path dir) {
        try {
            Files.deleteIfExists(dir);
        } catch (IOException e) {
            // a temporary folder left behind is not worth failing a benchmark for
        }
    }
}
