package io.vring.backends.vsock;

import io.vring.backends.vsock.driver.VsockPacket;
import io.vring.engine.RingKind;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.nio.channels.ServerSocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** Closing: half-close each way, full close, the host vanishing, and a device reset. */
@Timeout(60)
class ShutdownTest {
    private static final int PORT = 3000;
    @TempDir
    Path dir;

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void guestShutdownSendIsEofForTheHostWhichMayStillAnswer(RingKind kind) throws Exception {
        try (GuestDriver driver = GuestDriver.of(dir, kind);
             ServerSocketChannel server = HostEnd.listen(driver.config.listenerPath(PORT))) {
            GuestStack guest = new GuestStack(driver);
            GuestSocket socket = guest.connectAndWait(PORT, 65536);
            try (HostEnd host = HostEnd.accept(server)) {
                socket.write("request".getBytes(StandardCharsets.US_ASCII), 4096);
                socket.send(VsockPacket.SHUTDOWN, VsockPacket.SHUTDOWN_SEND, new byte[0]);
                assertArrayEquals("request".getBytes(StandardCharsets.US_ASCII), host.readToEnd(),
                        "the host reads the request, then EOF (shutdown(SHUT_WR) on its socket)");
                host.write("reply");
                guest.await(() -> socket.receivedTotal() == 5, "the reply after the half-close");
                assertEquals("reply", new String(socket.receivedBytes(), StandardCharsets.US_ASCII));
                host.close();
                guest.await(() -> socket.peerShutdown() == VsockPacket.SHUTDOWN_SEND, "SHUTDOWN(SEND) for the host's close");
                guest.settle(Duration.ofMillis(100));
                assertFalse(socket.reset(), "no RST while the guest may still read");
                // The guest's close() ends it: SHUTDOWN both ways, answered with the final RST.
                socket.send(VsockPacket.SHUTDOWN, VsockPacket.SHUTDOWN_RCV | VsockPacket.SHUTDOWN_SEND, new byte[0]);
                guest.await(() -> socket.reset(), "RST once the guest closed");
                GuestDriver.deadline(() -> driver.device.stats().open() == 0, "the connection to go");
            }
        }
    }

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void hostHalfCloseIsShutdownSendForTheGuestWhichMayStillSend(RingKind kind) throws Exception {
        try (GuestDriver driver = GuestDriver.of(dir, kind);
             ServerSocketChannel server = HostEnd.listen(driver.config.listenerPath(PORT))) {
            GuestStack guest = new GuestStack(driver);
            GuestSocket socket = guest.connectAndWait(PORT, 65536);
            try (HostEnd host = HostEnd.accept(server)) {
                host.write("banner");
                host.channel.shutdownOutput();
                guest.await(() -> socket.peerShutdown() != 0, "SHUTDOWN from the device");
                assertEquals(VsockPacket.SHUTDOWN_SEND, socket.peerShutdown(), "the host will send no more; it still receives");
                assertEquals("banner", new String(socket.receivedBytes(), StandardCharsets.US_ASCII), "data before the SHUTDOWN");
                assertFalse(socket.reset());
                socket.write("late words".getBytes(StandardCharsets.US_ASCII), 4096);
                assertArrayEquals("late words".getBytes(StandardCharsets.US_ASCII), host.read(10));
                // The guest closes: SHUTDOWN both ways; the device answers RST and closes the host socket.
                socket.send(VsockPacket.SHUTDOWN, VsockPacket.SHUTDOWN_RCV | VsockPacket.SHUTDOWN_SEND, new byte[0]);
                guest.await(() -> socket.reset(), "the final RST");
                assertTrue(host.sawEof());
                GuestDriver.deadline(() -> driver.device.stats().open() == 0, "the connection to go");
            }
        }
    }

    @Test
    void aHostThatVanishesMidStreamEndsOnlyItsOwnConnection() throws Exception {
        try (GuestDriver driver = GuestDriver.of(dir, RingKind.SPLIT);
             ServerSocketChannel server = HostEnd.listen(driver.config.listenerPath(PORT))) {
            GuestStack guest = new GuestStack(driver);
            GuestSocket doomed = guest.connectAndWait(PORT, 65536);
            HostEnd doomedHost = HostEnd.accept(server);
            GuestSocket survivor = guest.connectAndWait(PORT, 65536);
            try (HostEnd survivorHost = HostEnd.accept(server)) {
                doomed.write(new byte[1000], 500);
                doomedHost.read(1000);
                doomedHost.close();
                guest.await(() -> doomed.peerShutdown() != 0 || doomed.reset(), "SHUTDOWN or RST for the vanished host");
                // The guest keeps writing: the device's write fails (EPIPE) and it resets the connection.
                for (int i = 0; i < 50 && !doomed.reset(); i++) {
                    doomed.writeSome(new byte[100], 0, 100);
                    guest.settle(Duration.ofMillis(10));
                }
                assertTrue(doomed.reset(), "RST after the host vanished: " + doomed.log);
                survivor.write("still here".getBytes(StandardCharsets.US_ASCII), 4096);
                assertArrayEquals("still here".getBytes(StandardCharsets.US_ASCII), survivorHost.read(10));
                assertEquals(1, driver.device.stats().open());
            }
        }
    }

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void aDeviceResetClosesEveryHostSocket(RingKind kind) throws Exception {
        try (GuestDriver driver = GuestDriver.of(dir, kind);
             ServerSocketChannel server = HostEnd.listen(driver.config.listenerPath(PORT))) {
            GuestStack guest = new GuestStack(driver);
            guest.listen(80);
            List<HostEnd> hosts = new ArrayList<>();
            for (int i = 0; i < 5; i++) {
                guest.connectAndWait(PORT, 65536);
                hosts.add(HostEnd.accept(server));
            }
            for (int i = 0; i < 3; i++) {
                HostEnd host = HostEnd.connect(driver.config.udsPath());
                host.write("CONNECT 80\n");
                int accepted = i + 1;
                guest.await(() -> guest.accepted.size() == accepted, "host connection " + i);
                host.readLine();
                hosts.add(host);
            }
            HostEnd pending = HostEnd.connect(driver.config.udsPath());
            pending.write("CONNECT 81\n");
            hosts.add(pending);
            GuestDriver.deadline(() -> driver.device.stats().open() == 9, "nine connections");
            driver.resetDevice();
            for (HostEnd host : hosts) {
                assertTrue(host.sawEof(), "every host socket is closed");
                host.close();
            }
            assertEquals(0, driver.device.stats().open());
        }
    }
}
