package io.vring.backends.vsock;

import io.vring.backends.guest.GuestKit;
import io.vring.backends.guest.Initramfs;
import io.vring.backends.guest.QemuGuest;
import io.vring.engine.RingKind;
import io.vring.protocol.BackendServer;
import io.vring.protocol.ServerStats;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The vsock device serving a real Linux 6.1 guest through QEMU 7.2's vhost-user-vsock-pci (TCG).
 * The guest program ({@code vsock_guest.c}) connects to a host listener on {@code <uds-path>_1234}
 * that echoes a megabyte reversed, is refused on a port nobody listens on, and accepts a host
 * program's {@code CONNECT 5000}; then the guest's driver is unbound and bound again (QEMU stops
 * and restarts the rings) and the echo runs once more.
 */
class VsockGuestTest {
    private static final Duration STEP = Duration.ofSeconds(90);
    private static final int BYTES = 1 << 20;

    private static final String GUEST_SCRIPT = """
            vsock_guest connect 1234 %1$d 7
            vsock_guest refused 4321
            vsock_guest listen 5000 %1$d 9
            driver=/sys/bus/virtio/drivers/vmw_vsock_virtio_transport
            device=$(basename "$(readlink -f $driver/virtio*)")
            echo "$device" > $driver/unbind
            echo "$device" > $driver/bind
            echo REBOUND
            vsock_guest connect 1234 %1$d 11
            """.formatted(BYTES);

    @ParameterizedTest(name = "{0} ring")
    @EnumSource(RingKind.class)
    void aLinuxGuestTalksBothWaysIsRefusedAtOnceAndCarriesOnAfterADriverRebind(RingKind kind, @TempDir Path dir)
            throws Exception {
        GuestKit kit = GuestKit.require();
        Path initramfs = new Initramfs(kit).modules("virtio_pci", "vmw_vsock_virtio_transport")
                .program("/io/vring/backends/vsock/vsock_guest.c").script(GUEST_SCRIPT)
                .writeTo(dir.resolve("initramfs.cpio.gz"));
        VsockConfig config = VsockConfig.of(3, dir.resolve("vhost.sock"), dir.resolve("vm.vsock"));
        ServerStats serverStats;
        VsockStats.Snapshot stats;
        try (VsockDevice device = VsockDevice.open(config);
             BackendServer server = BackendServer.listen(config.socket(), device);
             ServerSocketChannel echo = HostEnd.listen(config.listenerPath(1234));
             ExecutorService host = Executors.newVirtualThreadPerTaskExecutor()) {
            serverStats = server.stats();
            Future<?> echoes = host.submit(() -> {
                for (int round = 0; round < 2; round++) {
                    // The guest may take a while to boot and get there on a loaded machine.
                    try (HostEnd end = HostEnd.accept(echo, STEP.multipliedBy(2))) {
                        byte[] got = end.readToEnd();
                        end.write(GuestToHostTest.reversed(got));
                    }
                }
                return null;
            });
            try (QemuGuest guest = QemuGuest.builder(kit, initramfs, "vsock-" + kind.name().toLowerCase())
                    .vhostUser("vhost-user-vsock-pci", config.socket(), kind == RingKind.PACKED ? "packed=on" : "packed=off")
                    .start()) {
                assertEquals(BYTES + " reversed", guest.awaitLine(Pattern.compile("^ECHO (.*)$"), STEP).group(1),
                        "the guest got its megabyte back reversed from the host listener");
                Matcher refused = guest.awaitLine(Pattern.compile("^REFUSED (.*) (\\d+)$"), STEP);
                assertEquals("Connection reset by peer", refused.group(1), "refused by RST");
                assertTrue(Long.parseLong(refused.group(2)) < 1000, "at once, not after the guest's 2 s timeout: "
                        + refused.group(2) + " ms");
                guest.awaitLine(Pattern.compile("^LISTENING 5000$"), STEP);
                String ok = hostConnects(config.udsPath(), 5000, pattern(9, BYTES));
                assertTrue(ok.matches("OK \\d+\n"), ok);
                assertEquals(BYTES + " intact", guest.awaitLine(Pattern.compile("^RECEIVED (.*)$"), STEP).group(1));
                guest.awaitLine(Pattern.compile("^REBOUND$"), STEP);
                assertEquals(BYTES + " reversed", guest.awaitLine(Pattern.compile("^ECHO (.*)$"), STEP).group(1),
                        "the device carries on after the rings were stopped and restarted");
                assertEquals(0, guest.awaitPowerOff(STEP), "the guest's script succeeded");
                assertEquals(List.of(), guest.qemuMessages(), "QEMU has nothing to complain about");
            }
            echoes.get(10, TimeUnit.SECONDS);
            stats = device.stats();
        }
        System.out.println("VsockGuestTest " + kind + ": " + stats + "; " + serverStats);
        assertEquals(0, stats.malformed(), stats.toString());
        assertEquals(0, stats.dropped(), stats.toString());
        assertEquals(1, stats.refused(), stats.toString());
        assertEquals(2, stats.guestConnections(), "the two echoes (a refused REQUEST opens nothing)");
        assertEquals(1, stats.hostConnections(), "the host's CONNECT 5000");
        assertEquals(0, stats.open(), "nothing left open");
        assertEquals(0, serverStats.brokenQueues(), serverStats.toString());
        assertEquals(4, serverStats.ringStarts(kind), "rx and tx, once per driver binding: " + serverStats);
    }

    /** A host program: CONNECT, read OK, send {@code data}, half-close, read the guest's answer. */
    private static String hostConnects(Path udsPath, int port, byte[] data) throws IOException {
        try (HostEnd end = HostEnd.connect(udsPath)) {
            end.write("CONNECT " + port + "\n");
            String ok = end.readLine();
            end.write(data);
            end.channel.shutdownOutput();
            assertEquals("thanks\n", new String(end.readToEnd(), StandardCharsets.US_ASCII));
            return ok;
        }
    }

    /** The same bytes as {@code pattern()} in vsock_guest.c. */
    static byte[] pattern(int seed, int n) {
        ByteBuffer bytes = ByteBuffer.allocate(n);
        for (int i = 0; i < n; i++) {
            bytes.put((byte) (seed * 31 + i * 7 + (i >>> 11)));
        }
        return bytes.array();
    }
}
