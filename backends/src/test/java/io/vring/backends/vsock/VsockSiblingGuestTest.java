package io.vring.backends.vsock;

import io.vring.backends.guest.GuestKit;
import io.vring.backends.guest.Initramfs;
import io.vring.backends.guest.QemuGuest;
import io.vring.engine.RingKind;
import io.vring.protocol.BackendServer;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.SplittableRandom;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Two real Linux guests under QEMU 7.2, each with its own vhost-user-vsock device in this one process
 * and the same {@link Siblings} (as {@code ./vring vsock --vm ... --vm ...} runs them), talk to each
 * other by CID: guest A's connect to a CID nobody serves fails at once, then A opens {@value #CONNS}
 * connections to guest B's listener and sends {@value #BYTES} bytes on each, half-closes, and checks
 * the {@value #REPLY} bytes B sends back; B checks every byte it gets. The host only tells A when
 * B listens (a hybrid connection to A's port {@value #GO_PORT}).
 */
class VsockSiblingGuestTest {
    private static final Duration STEP = Duration.ofSeconds(60);
    private static final long CID_A = 42, CID_B = 43, NOBODY = 99;
    private static final int PORT = 7000, GO_PORT = 6003, REFUSED_PORT = 7001;
    private static final int CONNS = 4, BYTES = 2 << 20, REPLY = 1 << 20;
    private static final long REFUSED_WITHIN_MILLIS = 1000;

    @ParameterizedTest(name = "{0} rings")
    @EnumSource(RingKind.class)
    void twoGuestsStreamToEachOtherThroughTheirDevices(RingKind kind, @TempDir Path dir) throws Exception {
        GuestKit kit = GuestKit.require();
        long seed = new SplittableRandom().nextLong();
        String s = Long.toUnsignedString(seed);
        System.out.println("VsockSiblingGuestTest " + kind + ": seed " + seed);
        Path initramfsA = new Initramfs(kit).modules("virtio_pci", "vmw_vsock_virtio_transport")
                .program("/io/vring/backends/vsock/vsock_guest.c")
                .script("""
                        vsock_guest cid || exit 1
                        VSOCK_PEER_CID=%d vsock_guest refused %d || exit 1
                        vsock_guest serve %d 1 0 0 %s || exit 1
                        VSOCK_PEER_CID=%d vsock_guest connect %d %d %d %d %s || exit 1
                        """.formatted(NOBODY, REFUSED_PORT, GO_PORT, s, CID_B, PORT, CONNS, BYTES, REPLY, s))
                .writeTo(Files.createDirectories(dir.resolve("a")).resolve("initramfs.cpio.gz"));
        Path initramfsB = new Initramfs(kit).modules("virtio_pci", "vmw_vsock_virtio_transport")
                .program("/io/vring/backends/vsock/vsock_guest.c")
                .script("""
                        vsock_guest cid || exit 1
                        vsock_guest serve %d %d %d %d %s || exit 1
                        """.formatted(PORT, CONNS, BYTES, REPLY, s))
                .writeTo(Files.createDirectories(dir.resolve("b")).resolve("initramfs.cpio.gz"));
        VsockConfig a = VsockConfig.of(CID_A, dir.resolve("a/vhost.sock"), dir.resolve("a/vsock.uds"));
        VsockConfig b = VsockConfig.of(CID_B, dir.resolve("b/vhost.sock"), dir.resolve("b/vsock.uds"));
        String packed = kind == RingKind.PACKED ? "packed=on" : "packed=off";
        Siblings siblings = new Siblings();
        try (VsockDevice deviceA = VsockDevice.open(a, siblings);
             VsockDevice deviceB = VsockDevice.open(b, siblings);
             BackendServer serverA = BackendServer.listen(a.socket(), deviceA);
             BackendServer serverB = BackendServer.listen(b.socket(), deviceB);
             HybridHosts hosts = new HybridHosts(seed);
             QemuGuest guestB = QemuGuest.builder(kit, initramfsB, "vsock-sibling-b").memoryMiB(256)
                     .vhostUser("vhost-user-vsock-pci", b.socket(), packed).start();
             QemuGuest guestA = QemuGuest.builder(kit, initramfsA, "vsock-sibling-a").memoryMiB(256)
                     .vhostUser("vhost-user-vsock-pci", a.socket(), packed).start()) {
            assertEquals(String.valueOf(CID_A), guestA.awaitLine(Pattern.compile("^CID (\\d+)$"), STEP).group(1));
            assertEquals(String.valueOf(CID_B), guestB.awaitLine(Pattern.compile("^CID (\\d+)$"), STEP).group(1));

            Matcher refused = guestA.awaitLine(Pattern.compile("^REFUSED(-CONNECTED)?(?: (\\d+) (\\S+) (\\d+))?$"), STEP);
            assertNull(refused.group(1), "a connect to a CID nobody serves must fail");
            assertEquals("ECONNRESET", refused.group(3), "reset by the device on behalf of CID " + NOBODY);
            assertTrue(Long.parseLong(refused.group(4)) < REFUSED_WITHIN_MILLIS, "refused after " + refused.group(4)
                    + " ms: the guest's own timeout is 2 s, the device must answer at once");

            guestB.awaitLine(Pattern.compile("^LISTENING " + PORT + "$"), STEP);
            guestA.awaitLine(Pattern.compile("^LISTENING " + GO_PORT + "$"), STEP);
            HybridHosts.await(hosts.connectToGuest(a.udsPath(), GO_PORT, 1, 0, 0), STEP);

            Matcher connected = guestA.awaitLine(Pattern.compile("^CONNECT-DONE " + PORT + " failures=(\\d+) in (\\d+) ms$"), STEP);
            Matcher served = guestB.awaitLine(Pattern.compile("^SERVE-DONE " + PORT + " failures=(\\d+) in (\\d+) ms$"), STEP);
            assertEquals(List.of(), guestA.console().stream().filter(l -> l.startsWith("FAIL ")).toList(), "guest A's complaints");
            assertEquals(List.of(), guestB.console().stream().filter(l -> l.startsWith("FAIL ")).toList(), "guest B's complaints");
            assertEquals("0", connected.group(1));
            assertEquals("0", served.group(1));
            for (String line : guestB.console()) {
                if (line.startsWith("SERVED " + PORT + " ")) {
                    assertTrue(line.contains(" peer=" + CID_A + ":"), "B's connections come from A's CID: " + line);
                }
            }
            assertEquals(0, guestA.awaitPowerOff(STEP), "guest A's script succeeded");
            assertEquals(0, guestB.awaitPowerOff(STEP), "guest B's script succeeded");
            assertEquals(List.of(), guestA.qemuMessages(), "QEMU A has nothing to complain about");
            assertEquals(List.of(), guestB.qemuMessages(), "QEMU B has nothing to complain about");
            VsockStats.Snapshot statsA = deviceA.stats(), statsB = deviceB.stats();
            System.out.printf("VsockSiblingGuestTest %s: A->B %d MiB over %d connections, B->A %d MiB, in %s ms (guest A's clock); A %s; B %s%n",
                    kind, (long) CONNS * BYTES >> 20, CONNS, (long) CONNS * REPLY >> 20, connected.group(2), statsA, statsB);
            assertTrue(statsA.siblingPackets() > (long) CONNS * BYTES / (64 << 10), statsA.toString());
            assertTrue(statsB.siblingPackets() > (long) CONNS * REPLY / (64 << 10), statsB.toString());
            assertEquals(0, statsA.malformed() + statsB.malformed() + statsA.dropped() + statsB.dropped(), statsA + " / " + statsB);
            assertEquals(0, serverA.stats().brokenQueues() + serverB.stats().brokenQueues());
        }
    }
}
