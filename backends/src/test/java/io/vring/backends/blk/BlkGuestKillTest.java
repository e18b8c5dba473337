package io.vring.backends.blk;

import io.vring.backends.Main;
import io.vring.backends.crash.BackendProcess;
import io.vring.backends.guest.GuestKit;
import io.vring.backends.guest.Initramfs;
import io.vring.backends.guest.QemuGuest;
import io.vring.engine.RingKind;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Issue #5 under a real guest: {@code vring blk} runs as a child process serving an image file to
 * QEMU 7.2's vhost-user-blk-pci ({@code reconnect=1}), and is killed with SIGKILL three times while
 * a Linux guest keeps four writers busy on the disk (O_DIRECT, {@value #DEPTH} requests in flight
 * each). After each kill a new back-end listens on the same path at once; QEMU reconnects, hands it
 * the inflight region, and the new back-end resubmits what the dead one had not completed.
 *
 * <p>The guest must end with no I/O error, no wrong byte and no request lost (each writer re-reads
 * every pass it wrote), the guest kernel must not complain ("I/O error", "is not a head": what a
 * back-end without inflight tracking causes, see real-peers.md), and the image file must hold the
 * last pass's pattern.
 */
class BlkGuestKillTest {
    private static final int KILLS = 3;
    private static final int THREADS = 4;
    private static final int REGION = 4 << 20;
    private static final int REQUEST = 64 << 10;
    private static final int DEPTH = 8;
    private static final int PASSES = 120;
    private static final int IMAGE_BYTES = THREADS * REGION;
    /** QEMU 7.2 loses the device for good if the back-end dies during its reconnect handshake. */
    private static final Duration SETTLE_AFTER_RESTART = Duration.ofSeconds(2);
    private static final Duration STEP = Duration.ofSeconds(60);
    private static final Pattern PROGRESS = Pattern.compile("^BLKKILL-PROGRESS ");
    private static final Pattern RESULT = Pattern.compile(
            "^BLKKILL-RESULT errors (\\d+) mismatches (\\d+) stalls (\\d+) written (\\d+) read (\\d+) ms (\\d+)$");
    private static final Pattern RESUBMITTED = Pattern.compile("(\\d+) requests in flight before the restart are resubmitted first");

    @ParameterizedTest(name = "{0} rings")
    @EnumSource(RingKind.class)
    void theGuestsDataSurvivesThreeKillsOfTheBackend(RingKind kind, @TempDir Path dir) throws Exception {
        GuestKit kit = GuestKit.require();
        long seed = new SplittableRandom().nextLong();
        System.out.println("BlkGuestKillTest " + kind + ": pattern seed " + seed);
        Path image = dir.resolve("disk.img");
        try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "rw")) {
            f.setLength(IMAGE_BYTES);
        }
        String script = """
                n=0
                while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done
                blk_kill_guest /dev/vda %s %d %d %d %d %d
                """.formatted(Long.toUnsignedString(seed), THREADS, REGION, REQUEST, DEPTH, PASSES);
        Path initramfs = new Initramfs(kit).modules("virtio_pci", "virtio_blk")
                .program("/io/vring/backends/blk/blk_kill_guest.c").script(script)
                .writeTo(dir.resolve("initramfs.cpio.gz"));
        Path socket = dir.resolve("blk.sock");
        // The back-ends' logs stay after the run, next to the guest's console: they are the evidence.
        Path logs = Path.of("target", "guest-logs").toAbsolutePath();
        Files.createDirectories(logs);
        String name = "blk-kill-" + kind.name().toLowerCase();

        List<BackendProcess> backends = new ArrayList<>();
        long started = System.nanoTime();
        try {
            backends.add(startBackend(logs.resolve(name + "-backend-g0.log"), socket, image, 0));
            try (QemuGuest guest = QemuGuest.builder(kit, initramfs, name)
                    .ceiling(Duration.ofSeconds(150))
                    .vhostUserReconnecting("vhost-user-blk-pci", socket, 1, kind == RingKind.PACKED ? "packed=on" : "packed=off")
                    .start()) {
                for (int k = 1; k <= KILLS; k++) {
                    guest.skipPrinted();
                    guest.awaitLine(PROGRESS, STEP); // the disk is busy (again)
                    BackendProcess victim = backends.getLast();
                    victim.killNine();
                    assertEquals(137, victim.awaitExit(10_000), "generation " + victim.generation() + " died of SIGKILL");
                    long killedAt = System.nanoTime();
                    backends.add(startBackend(logs.resolve(name + "-backend-g" + k + ".log"), socket, image, k));
                    System.out.printf("BlkGuestKillTest %s: kill %d at %.1f s, generation %d listening %d ms later%n", kind, k,
                            seconds(killedAt - started), k, TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - killedAt));
                    Thread.sleep(SETTLE_AFTER_RESTART);
                }
                Matcher result = guest.awaitLine(RESULT, Duration.ofSeconds(90));
                int status = guest.awaitPowerOff(STEP);
                List<String> console = guest.console();
                System.out.println("BlkGuestKillTest " + kind + ": " + result.group() + ", whole run "
                        + String.format("%.1f s", seconds(System.nanoTime() - started)));
                System.out.println("BlkGuestKillTest " + kind + ": QEMU said " + guest.qemuMessages());
                assertEquals("0", result.group(1), "I/O errors in the guest (console: " + guest.log() + ")");
                assertEquals("0", result.group(2), "wrong words read back by the guest (console: " + guest.log() + ")");
                assertEquals("0", result.group(3), "requests the device never answered (console: " + guest.log() + ")");
                assertEquals((long) PASSES * IMAGE_BYTES, Long.parseLong(result.group(4)), "bytes written");
                assertEquals((long) PASSES * IMAGE_BYTES, Long.parseLong(result.group(5)), "bytes read back");
                assertEquals(0, status, "the guest program's exit status");
                assertEquals(List.of(), console.stream().filter(l -> l.contains("I/O error") || l.contains("is not a head")).toList(),
                        "the guest kernel saw no failed or doubly completed request");
            }
            for (BackendProcess b : backends) {
                assertEquals(List.of(), b.logLines().stream().filter(l -> l.contains("is broken")).toList(),
                        "no queue of back-end generation " + b.generation() + " broke");
            }
            int resubmitted = 0;
            for (BackendProcess b : backends.subList(1, backends.size())) {
                int n = resubmittedBy(b);
                System.out.println("BlkGuestKillTest " + kind + ": generation " + b.generation() + " resubmitted " + n
                        + " request(s) in flight at the kill");
                resubmitted += n;
            }
            System.out.println("BlkGuestKillTest " + kind + ": " + resubmitted + " request(s) resubmitted over " + KILLS + " kills");
            assertTrue(backends.getLast().logLines().stream().anyMatch(l -> l.contains(" started: " + kind.name().toLowerCase())),
                    "the last back-end ran the " + kind + " ring");
        } catch (AssertionError | Exception e) {
            // The guest's console is in the failure message; the back-ends' side goes to the test output.
            // QEMU is gone by now: give the live back-end a moment to log its disconnect (ring positions, stats).
            Thread.sleep(1000);
            for (BackendProcess b : backends) {
                System.out.println("BlkGuestKillTest " + kind + ": back-end generation " + b.generation() + " said:\n  "
                        + String.join("\n  ", b.logLines()));
            }
            throw e;
        } finally {
            backends.forEach(BackendProcess::close);
        }
        assertImageHoldsLastPass(image, seed);
    }

    private static BackendProcess startBackend(Path log, Path socket, Path image, int generation)
            throws IOException, InterruptedException {
        BackendProcess b = BackendProcess.start(log, generation, Main.class,
                List.of("blk", "--socket", socket.toString(), "--image", image.toString(), "--serial", "vring-kill-" + generation));
        long deadline = System.nanoTime() + STEP.toNanos();
        while (b.logLines().stream().noneMatch(l -> l.startsWith("vring blk: listening on"))) {
            if (!b.isAlive() || System.nanoTime() > deadline) {
                b.close();
                fail("back-end generation " + generation + " is not listening (" + (b.isAlive() ? "timeout" : "exited")
                        + "):\n" + String.join("\n", b.logLines()));
            }
            Thread.sleep(20);
        }
        return b;
    }

    private static int resubmittedBy(BackendProcess b) {
        int n = 0;
        for (String line : b.logLines()) {
            Matcher m = RESUBMITTED.matcher(line);
            if (m.find()) {
                n += Integer.parseInt(m.group(1));
            }
        }
        return n;
    }

    /** The host's view: every word of the image is the last pass's, as blk_kill_guest.c computes it. */
    private static void assertImageHoldsLastPass(Path image, long seed) throws IOException {
        ByteBuffer bytes = ByteBuffer.wrap(Files.readAllBytes(image)).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(IMAGE_BYTES, bytes.capacity());
        long wrong = 0;
        long first = -1;
        for (int offset = 0; offset < IMAGE_BYTES; offset += 8) {
            if (bytes.getLong(offset) != word(seed, PASSES - 1, offset)) {
                wrong++;
                first = first < 0 ? offset : first;
            }
        }
        assertEquals(0, wrong, "words of the image file that are not the last pass's (first at " + first + ")");
    }

    private static long word(long seed, long pass, long offset) {
        long z = seed + pass * 0x9E3779B97F4A7C15L + (offset / 8) * 0xD1B54A32D192ED03L;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    private static double seconds(long nanos) {
        return nanos / 1e9;
    }
}
