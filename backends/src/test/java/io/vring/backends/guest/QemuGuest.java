package io.vring.backends.guest;

import org.junit.jupiter.api.Assertions;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A QEMU guest under TCG (no KVM needed) booting the kit's kernel with an {@link Initramfs}: the
 * real front-end of the guest tests. Each vhost-user device is a {@code -chardev socket} (QEMU is
 * the client: the back-end must already listen) and a {@code -device}. Guest memory is a shared
 * memfd, which vhost-user needs.
 *
 * <p>The serial console (and QEMU's own messages) go into memory, where the test waits for lines,
 * and into {@code target/guest-logs/<name>.log} together with the command line. Every wait has a
 * timeout and fails with the end of the console. QEMU runs under {@code timeout -s KILL} as a last
 * resort if this JVM dies without closing the guest; {@link #close()} (and a shutdown hook) kill
 * it otherwise, so no process is left behind.
 */
public final class QemuGuest implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(QemuGuest.class.getName());
    private static final int CONSOLE_TAIL_LINES = 40;

    private final String name;
    private final Process process;
    private final Path log;
    private final Thread reader;
    private final Thread shutdownHook;
    private final List<String> lines = new ArrayList<>();
    private int cursor;
    private boolean consoleClosed;

    private QemuGuest(String name, List<String> command, Path log) throws IOException {
        this.name = name;
        this.log = log;
        Files.createDirectories(log.getParent());
        Files.writeString(log, String.join(" ", command) + "\n\n");
        this.process = new ProcessBuilder(command).redirectErrorStream(true).start();
        this.shutdownHook = new Thread(this::kill, "qemu-guest-kill-" + name);
        Runtime.getRuntime().addShutdownHook(shutdownHook);
        this.reader = Thread.ofPlatform().daemon().name("qemu-console-" + name).start(this::readConsole);
        LOG.log(System.Logger.Level.INFO, "guest {0}: QEMU under timeout pid {1}, console in {2}",
                name, String.valueOf(process.pid()), log);
    }

    public static Builder builder(GuestKit kit, Path initramfs, String name) {
        return new Builder(kit, initramfs, name);
    }

    /** QEMU's command-line choices; {@link #start()} launches it. */
    public static final class Builder {
        private final GuestKit kit;
        private final Path initramfs;
        private final String name;
        private final List<String> kernelArgs = new ArrayList<>();
        private final List<String> devices = new ArrayList<>();
        private int chardevs;
        private int memoryMiB = 256;
        private Duration ceiling = Duration.ofSeconds(120);

        private Builder(GuestKit kit, Path initramfs, String name) {
            this.kit = kit;
            this.initramfs = initramfs;
            this.name = name;
        }

        /** Extra kernel command-line arguments (after {@code quiet console=ttyS0 panic=-1}). */
        public Builder kernelArgs(String... args) {
            kernelArgs.addAll(List.of(args));
            return this;
        }

        /** Guest RAM; above 2 GiB q35 splits it into two regions (two fds of one memfd). */
        public Builder memoryMiB(int mib) {
            this.memoryMiB = mib;
            return this;
        }

        /** The longest QEMU may live, even if nobody closes it. */
        public Builder ceiling(Duration ceiling) {
            this.ceiling = ceiling;
            return this;
        }

        /** A vhost-user device, e.g. {@code vhostUser("vhost-user-rng-pci", socket, "packed=on")}. */
        public Builder vhostUser(String deviceType, Path socket, String... properties) {
            return vhostUser(deviceType, "socket,path=" + socket, properties);
        }

        /**
         * A vhost-user device whose back-end may die: QEMU connects again {@code reconnectSeconds}
         * after the socket closes, and again each second until a back-end listens on the path.
         */
        public Builder vhostUserReconnecting(String deviceType, Path socket, int reconnectSeconds, String... properties) {
            return vhostUser(deviceType, "socket,path=" + socket + ",reconnect=" + reconnectSeconds, properties);
        }

        private Builder vhostUser(String deviceType, String chardevOptions, String... properties) {
            String chardev = "c" + chardevs++;
            List<String> device = new ArrayList<>(List.of(deviceType, "chardev=" + chardev));
            device.addAll(List.of(properties));
            devices.addAll(List.of("-chardev", chardevOptions.replaceFirst("^socket,", "socket,id=" + chardev + ","),
                    "-device", String.join(",", device)));
            return this;
        }

        public QemuGuest start() throws IOException {
            List<String> command = new ArrayList<>(List.of(
                    "timeout", "-s", "KILL", ceiling.toSeconds() + "s",
                    kit.qemu().toString(),
                    "-machine", "q35,accel=tcg,memory-backend=mem0",
                    "-object", "memory-backend-memfd,id=mem0,size=" + memoryMiB + "M,share=on",
                    "-m", memoryMiB + "M", "-smp", "1",
                    "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
                    "-kernel", kit.kernel().toString(), "-initrd", initramfs.toString(),
                    "-append", String.join(" ", "quiet console=ttyS0 panic=-1", String.join(" ", kernelArgs)).strip()));
            command.addAll(devices);
            return new QemuGuest(name, command, Path.of("target", "guest-logs", name + ".log").toAbsolutePath());
        }
    }

    private void readConsole() {
        byte[] buffer = new byte[8192];
        StringBuilder line = new StringBuilder();
        try (InputStream in = process.getInputStream();
             OutputStream file = Files.newOutputStream(log, java.nio.file.StandardOpenOption.APPEND)) {
            for (int n; (n = in.read(buffer)) > 0; ) {
                file.write(buffer, 0, n);
                file.flush();
                String text = new String(buffer, 0, n, StandardCharsets.ISO_8859_1);
                for (int i = 0; i < text.length(); i++) {
                    char c = text.charAt(i);
                    if (c == '\n') {
                        addLine(line.toString());
                        line.setLength(0);
                    } else if (c != '\r') {
                        line.append(c);
                    }
                }
            }
        } catch (IOException e) {
            // The stream closes when QEMU is killed; whatever arrived is in the log already.
        } finally {
            synchronized (this) {
                if (!line.isEmpty()) {
                    lines.add(line.toString());
                }
                consoleClosed = true;
                notifyAll();
            }
        }
    }

    private synchronized void addLine(String line) {
        lines.add(line);
        notifyAll();
    }

    /**
     * Waits for the next console line (after those already matched) that {@code pattern} finds,
     * and returns its match. Fails with the console's end if QEMU exits or {@code timeout} passes first.
     */
    public synchronized Matcher awaitLine(Pattern pattern, Duration timeout) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            for (; cursor < lines.size(); cursor++) {
                Matcher matcher = pattern.matcher(lines.get(cursor));
                if (matcher.find()) {
                    cursor++;
                    return matcher;
                }
                if (lines.get(cursor).contains(Initramfs.FAILED)) {
                    Assertions.fail("guest " + name + " failed to set up: " + lines.get(cursor) + "\n" + tail());
                }
            }
            if (consoleClosed) {
                Assertions.fail("guest " + name + ": QEMU exited before printing /" + pattern + "/\n" + tail());
            }
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                Assertions.fail("guest " + name + ": no line /" + pattern + "/ within " + timeout + "\n" + tail());
            }
            TimeUnit.NANOSECONDS.timedWait(this, left);
        }
    }

    /** Passes over what was printed so far: the next {@link #awaitLine} sees only lines that come after now. */
    public synchronized void skipPrinted() {
        cursor = lines.size();
    }

    /** The lines the guest printed between {@code <tag>-BEGIN} and {@code <tag>-END}. */
    public List<String> awaitSection(String tag, Duration timeout) throws InterruptedException {
        awaitLine(Pattern.compile("^" + Pattern.quote(tag + "-BEGIN") + "$"), timeout);
        int start;
        synchronized (this) {
            start = cursor;
        }
        awaitLine(Pattern.compile("^" + Pattern.quote(tag + "-END") + "$"), timeout);
        synchronized (this) {
            return List.copyOf(lines.subList(start, cursor - 1));
        }
    }

    /**
     * Waits for the guest's script to end and QEMU to exit by itself (the guest powers off), and
     * returns the script's exit status. Fails if QEMU exits with an error.
     */
    public int awaitPowerOff(Duration timeout) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        int status = Integer.parseInt(awaitLine(Pattern.compile("^" + Initramfs.EXIT + " (\\d+)$"), timeout).group(1));
        long left = Math.max(0, deadline - System.nanoTime());
        if (!process.waitFor(left, TimeUnit.NANOSECONDS)) {
            Assertions.fail("guest " + name + ": QEMU still runs " + timeout + " after the guest's script ended\n" + tail());
        }
        if (process.exitValue() != 0) {
            Assertions.fail("guest " + name + ": QEMU exited with " + process.exitValue() + "\n" + tail());
        }
        return status;
    }

    /**
     * QEMU's own warnings and errors so far (the lines it prefixes with its program name), e.g. a
     * vhost-user feature it did not expect: a device that works but makes QEMU complain is not right.
     */
    public synchronized List<String> qemuMessages() {
        return lines.stream().filter(line -> line.startsWith("qemu-system-x86_64:")).toList();
    }

    /** Everything QEMU printed so far, one entry per line. */
    public synchronized List<String> console() {
        return List.copyOf(lines);
    }

    public Path log() {
        return log;
    }

    /** QEMU itself and the {@code timeout} that watches it. */
    public List<ProcessHandle> processes() {
        List<ProcessHandle> all = new ArrayList<>(process.descendants().toList());
        all.add(process.toHandle());
        return all;
    }

    private synchronized String tail() {
        int from = Math.max(0, lines.size() - CONSOLE_TAIL_LINES);
        return "--- console of " + name + " (" + log + "), last " + (lines.size() - from) + " lines ---\n"
                + String.join("\n", lines.subList(from, lines.size()));
    }

    private void kill() {
        // QEMU first: killing its `timeout` parent first would orphan it.
        process.descendants().forEach(ProcessHandle::destroyForcibly);
        process.destroyForcibly();
    }

    /** Kills QEMU if it still runs and waits until it and the console reader are gone. */
    @Override
    public void close() throws InterruptedException {
        List<ProcessHandle> all = processes();
        kill();
        for (ProcessHandle handle : all) {
            try {
                handle.onExit().get(10, TimeUnit.SECONDS);
            } catch (java.util.concurrent.ExecutionException | java.util.concurrent.TimeoutException e) {
                throw new IllegalStateException("guest " + name + ": process " + handle.pid() + " did not die", e);
            }
        }
        reader.join(Duration.ofSeconds(10));
        try {
            Runtime.getRuntime().removeShutdownHook(shutdownHook);
        } catch (IllegalStateException shuttingDown) {
            // The hook runs anyway.
        }
    }
}
