package io.vring.backends.rng;

import io.vring.backends.guest.GuestKit;
import io.vring.backends.guest.Initramfs;
import io.vring.backends.guest.QemuGuest;
import io.vring.engine.RingKind;
import io.vring.protocol.BackendServer;
import io.vring.protocol.ServerStats;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.SplittableRandom;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The rng device serving a real Linux guest through QEMU 7.2's vhost-user-rng-pci. The device
 * serves a seeded file of known bytes in order ({@code --source}); the guest reads /dev/hwrng,
 * resets the device by unbinding and rebinding its driver, and reads again. Each read must be a
 * contiguous run of the file (the kernel itself takes a few bytes at every probe, so not
 * necessarily its start), the second one later in the file than the first, and the back-end must
 * have started the ring with the layout QEMU was told to use, once per driver binding.
 */
class RngGuestTest {
    private static final Duration GUEST_STEP = Duration.ofSeconds(60);
    /** Far more than the guest takes (two reads and a few probes), so the source never wraps here. */
    private static final int SOURCE_BYTES = 256 << 10;
    private static final int READ_BYTES = 4096;
    private static final Pattern HEX_LINE = Pattern.compile("([0-9a-f]{2})+");

    /*
     * virtio_rng registers with quality 1000 (so rng_core.default_quality does not apply), which
     * starts the kernel's hwrng reader thread: it feeds the entropy pool from the device in the
     * background and can interleave with our reads (it mostly sleeps once the pool is seeded, but
     * not always). Writing quality 0 stops the thread, and waits for it, before we read; a rebind
     * registers the device again, so it is written again.
     */
    private static final String GUEST_SCRIPT = """
            hwrng=/sys/class/misc/hw_random
            driver=/sys/bus/virtio/drivers/virtio_rng
            echo 0 > $hwrng/rng_quality
            echo "QUALITY $(cat $hwrng/rng_quality)"
            echo "CURRENT $(cat $hwrng/rng_current)"
            echo READ1-BEGIN
            head -c %1$d /dev/hwrng | xxd -p -c 64
            echo READ1-END
            device=$(basename "$(readlink -f $driver/virtio*)")
            echo "$device" > $driver/unbind
            echo "UNBOUND $(cat $hwrng/rng_current)"
            echo "$device" > $driver/bind
            echo 0 > $hwrng/rng_quality
            echo "REBOUND $(cat $hwrng/rng_current) $(cat $hwrng/rng_quality)"
            echo READ2-BEGIN
            head -c %1$d /dev/hwrng | xxd -p -c 64
            echo READ2-END
            """.formatted(READ_BYTES);

    /*
     * 3 GiB: q35 puts RAM in two regions (below 2 GiB and from 4 GiB up), passed as two fds of one
     * memfd, and the guest kernel allocates from the upper one first, so the rings and buffers are
     * translated through the second region (seen: the split ring at GPA 0x1_01b2_0000).
     */
    static Stream<Arguments> guests() {
        return Stream.of(
                Arguments.of(RingKind.SPLIT, 256),
                Arguments.of(RingKind.PACKED, 256),
                Arguments.of(RingKind.SPLIT, 3072));
    }

    @ParameterizedTest(name = "{0} ring, {1} MiB of guest RAM")
    @MethodSource("guests")
    void guestReadsTheServedBytesInOrderBeforeAndAfterADriverRebind(RingKind kind, int memoryMiB, @TempDir Path dir)
            throws Exception {
        GuestKit kit = GuestKit.require();
        long seed = new SplittableRandom().nextLong();
        System.out.println("RngGuestTest " + kind + " " + memoryMiB + " MiB: source seed " + seed);
        byte[] served = new byte[SOURCE_BYTES];
        new SplittableRandom(seed).nextBytes(served);
        Path source = Files.write(dir.resolve("source.bin"), served);
        Path initramfs = new Initramfs(kit).modules("virtio_pci", "virtio_rng").script(GUEST_SCRIPT)
                .writeTo(dir.resolve("initramfs.cpio.gz"));
        Path socket = dir.resolve("rng.sock");

        RngBackend device;
        ServerStats stats;
        try (EntropySource entropy = EntropySource.file(source);
             BackendServer server = BackendServer.listen(socket, device = new RngBackend(entropy))) {
            stats = server.stats();
            String name = "rng-" + kind.name().toLowerCase() + "-" + memoryMiB + "m";
            try (QemuGuest guest = QemuGuest.builder(kit, initramfs, name).memoryMiB(memoryMiB)
                    .vhostUser("vhost-user-rng-pci", socket, kind == RingKind.PACKED ? "packed=on" : "packed=off")
                    .start()) {
                assertEquals("0", guest.awaitLine(Pattern.compile("^QUALITY (\\d+)$"), GUEST_STEP).group(1),
                        "the kernel's background hwrng reader is off");
                assertTrue(guest.awaitLine(Pattern.compile("^CURRENT (\\S+)$"), GUEST_STEP).group(1).startsWith("virtio_rng."),
                        "/dev/hwrng reads from the virtio device");
                byte[] first = hex(guest.awaitSection("READ1", GUEST_STEP));
                assertEquals("none", guest.awaitLine(Pattern.compile("^UNBOUND (\\S+)$"), GUEST_STEP).group(1),
                        "unbinding the driver removes the hwrng");
                Matcher rebound = guest.awaitLine(Pattern.compile("^REBOUND (\\S+) (\\d+)$"), GUEST_STEP);
                assertTrue(rebound.group(1).startsWith("virtio_rng."), "rebinding the driver brings it back");
                assertEquals("0", rebound.group(2), "the background reader is off again");
                byte[] second = hex(guest.awaitSection("READ2", GUEST_STEP));
                assertEquals(0, guest.awaitPowerOff(GUEST_STEP), "the guest's script succeeded");
                assertEquals(List.of(), guest.qemuMessages(), "QEMU has nothing to complain about");

                int firstAt = offsetIn(served, first);
                int secondAt = offsetIn(served, second);
                assertTrue(firstAt >= 0, "the first read is a run of the served file (seed " + seed + ")");
                assertTrue(secondAt >= 0, "the read after the reset is a run of the served file (seed " + seed + ")");
                assertTrue(secondAt >= firstAt + READ_BYTES, "the device carries on in order across the reset: first read at "
                        + firstAt + ", second at " + secondAt + " (seed " + seed + ")");
                System.out.println("RngGuestTest " + kind + " " + memoryMiB + " MiB: reads at file offsets " + firstAt + " and " + secondAt
                        + "; " + stats);
            }
        }
        assertEquals(2, stats.ringStarts(kind), "one ring start per driver binding, as " + kind + ": " + stats);
        assertEquals(0, stats.ringStarts(kind == RingKind.PACKED ? RingKind.SPLIT : RingKind.PACKED), stats.toString());
        assertEquals(0, stats.brokenQueues(), stats.toString());
        assertTrue(device.bytesServed() >= 2L * READ_BYTES, "served " + device.bytesServed() + " bytes");
    }

    private static byte[] hex(List<String> lines) {
        for (String line : lines) {
            // A kernel message in the middle of the dump is a finding, not noise to skip.
            assertTrue(HEX_LINE.matcher(line).matches(), "not a line of xxd -p output: " + line);
        }
        byte[] bytes = HexFormat.of().parseHex(String.join("", lines));
        assertEquals(READ_BYTES, bytes.length, "bytes the guest read from /dev/hwrng");
        return bytes;
    }

    /** Where {@code run} occurs in {@code file}, or -1. */
    private static int offsetIn(byte[] file, byte[] run) {
        for (int at = 0; at + run.length <= file.length; at++) {
            if (Arrays.equals(file, at, at + run.length, run, 0, run.length)) {
                return at;
            }
        }
        return -1;
    }
}
