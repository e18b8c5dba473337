package io.vring.backends.guest;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The guest harness itself, against real QEMU with no vhost device: the kit's kernel boots our
 * initramfs, runs a host-compiled static program and the test's script, and powers off; a guest
 * that hangs is killed at close with nothing left behind.
 */
class GuestBootTest {
    private static final Duration BOOT = Duration.ofSeconds(60);

    @Test
    void guestRunsTheKitsKernelAndAStaticProgramThenPowersOff(@TempDir Path dir) throws Exception {
        GuestKit kit = GuestKit.require();
        Path initramfs = new Initramfs(kit)
                .program("/io/vring/backends/guest/guest_uname.c")
                .script("""
                        echo "SHELL-RELEASE $(uname -r)"
                        guest_uname
                        exit 7
                        """)
                .writeTo(dir.resolve("initramfs.cpio.gz"));
        try (QemuGuest guest = QemuGuest.builder(kit, initramfs, "boot").start()) {
            guest.awaitLine(Pattern.compile("^" + Initramfs.READY + "$"), BOOT);
            assertEquals(kit.kernelVersion(),
                    guest.awaitLine(Pattern.compile("^SHELL-RELEASE (\\S+)$"), BOOT).group(1));
            assertEquals(kit.kernelVersion(),
                    guest.awaitLine(Pattern.compile("^PROGRAM-RELEASE (\\S+)$"), BOOT).group(1));
            assertEquals(7, guest.awaitPowerOff(BOOT), "the script's exit status reaches the test");
        }
    }

    @Test
    void aGuestThatNeverFinishesFailsTheWaitAndIsKilledAtClose(@TempDir Path dir) throws Exception {
        GuestKit kit = GuestKit.require();
        Path initramfs = new Initramfs(kit)
                .script("echo SLEEPING; sleep 1000")
                .writeTo(dir.resolve("initramfs.cpio.gz"));
        List<ProcessHandle> processes;
        try (QemuGuest guest = QemuGuest.builder(kit, initramfs, "hang").start()) {
            guest.awaitLine(Pattern.compile("^SLEEPING$"), BOOT);
            processes = guest.processes();
            assertEquals(2, processes.size(), "QEMU and the timeout that watches it: " + processes);
            AssertionError timedOut = assertThrows(AssertionError.class,
                    () -> guest.awaitLine(Pattern.compile("^NEVER$"), Duration.ofMillis(300)));
            assertTrue(timedOut.getMessage().contains("SLEEPING"), "the failure shows the console: " + timedOut.getMessage());
        }
        for (ProcessHandle process : processes) {
            assertFalse(process.isAlive(), "process " + process.pid() + " outlived close()");
        }
    }
}
