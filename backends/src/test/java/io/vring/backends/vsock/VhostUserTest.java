package io.vring.backends.vsock;

import io.vring.engine.RingKind;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.nio.channels.ServerSocketChannel;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The device behind the real control plane: a {@code BackendServer} serves it, the project's
 * vhost-user front-end ({@code FrontendDevice} over {@code BackendClient}) sets up memfd memory and
 * the rx and tx rings as QEMU does, and the server's ring workers (sleeping on kick eventfds, woken
 * by the device's host thread) carry the traffic.
 */
@Timeout(60)
class VhostUserTest {
    @TempDir
    Path dir;

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void trafficBothWaysThroughBackendServerAndADisconnectClosesTheHostSockets(RingKind kind) throws Exception {
        try (GuestDriver driver = GuestDriver.overVhostUser(dir, kind);
             ServerSocketChannel server = HostEnd.listen(driver.config.listenerPath(1234));
             ExecutorService io = Executors.newVirtualThreadPerTaskExecutor()) {
            GuestStack guest = new GuestStack(driver);
            guest.listen(5000);
            GuestSocket out = guest.connectAndWait(1234, 64 * 1024);
            assertTrue(out.established(), out.log.toString());
            HostEnd outHost = HostEnd.accept(server);
            HostEnd inHost = HostEnd.connect(driver.config.udsPath());
            inHost.write("CONNECT 5000\n");
            guest.await(() -> !guest.accepted.isEmpty(), "the host's REQUEST");
            GuestSocket in = guest.accepted.getFirst();
            assertEquals("OK " + in.hostPort + "\n", inHost.readLine());

            SplittableRandom random = new SplittableRandom(99);
            byte[] up = GuestToHostTest.bytes(random, 1 << 20);
            byte[] down = GuestToHostTest.bytes(random, 1 << 20);
            Future<byte[]> upRead = io.submit(() -> outHost.read(up.length));
            Future<?> downWrite = io.submit(() -> {
                inHost.write(down);
                return null;
            });
            out.write(up, 16 * 1024);
            guest.await(() -> in.receivedTotal() == down.length, "host-to-guest megabyte");
            assertArrayEquals(up, upRead.get(20, TimeUnit.SECONDS));
            assertArrayEquals(down, in.receivedBytes());
            downWrite.get(20, TimeUnit.SECONDS);
            assertEquals(List.of(), guest.violations);

            // The front-end goes away: the server stops the rings and resets the device.
            driver.resetDevice();
            List<HostEnd> hosts = new ArrayList<>(List.of(outHost, inHost));
            for (HostEnd host : hosts) {
                assertTrue(host.sawEof(), "host socket closed by the reset");
                host.close();
            }
            GuestDriver.deadline(() -> driver.device.stats().open() == 0, "no connection left");
        }
    }

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void getConfigReturnsTheGuestCidAndARefusalIsImmediate(RingKind kind) throws Exception {
        try (GuestDriver driver = GuestDriver.overVhostUser(dir, kind)) {
            assertEquals(3, driver.guestCidFromConfigSpace(), "GET_CONFIG(0, 8): le64 guest_cid");
            GuestStack guest = new GuestStack(driver);
            GuestSocket refused = guest.connectAndWait(4321, 4096);
            assertTrue(refused.reset(), "RST at once through the real workers too");
        }
    }
}
