package io.vring.backends.vsock;

import io.vring.backends.vsock.driver.VsockPacket;
import io.vring.engine.RingKind;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/** A host program connects to {@code <uds-path>}, writes {@code CONNECT <port>}, and reaches a guest listener. */
@Timeout(60)
class HostToGuestTest {
    @TempDir
    Path dir;

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void connectLineReachesTheGuestListenerAndBytesAfterItAreKept(RingKind kind) throws Exception {
        try (GuestDriver driver = GuestDriver.of(dir, kind);
             HostEnd host = HostEnd.connect(driver.config.udsPath());
             ExecutorService io = Executors.newVirtualThreadPerTaskExecutor()) {
            GuestStack guest = new GuestStack(driver);
            guest.listen(5000);
            host.write("CONNECT 5000\nhello, guest");
            guest.await(() -> !guest.accepted.isEmpty(), "the host's REQUEST");
            GuestSocket socket = guest.accepted.getFirst();
            int hostPort = socket.hostPort;
            assertTrue(Integer.toUnsignedLong(hostPort) >= 1L << 30 && Integer.toUnsignedLong(hostPort) < 1L << 31,
                    "host-side port " + Integer.toUnsignedString(hostPort) + " in [2^30, 2^31)");
            assertEquals("OK " + hostPort + "\n", host.readLine(), "OK names the host-side port");
            guest.await(() -> socket.receivedTotal() == 12, "the bytes that came with the CONNECT line");
            assertEquals("hello, guest", new String(socket.receivedBytes(), StandardCharsets.US_ASCII));

            SplittableRandom random = new SplittableRandom(11);
            byte[] down = GuestToHostTest.bytes(random, 400_000);
            byte[] up = GuestToHostTest.bytes(random, 400_000);
            Future<?> hostWrite = io.submit(() -> {
                host.write(down);
                return null;
            });
            Future<byte[]> hostRead = io.submit(() -> host.read(up.length));
            socket.write(up, 32 * 1024);
            guest.await(() -> socket.receivedTotal() == 12 + down.length, "host-to-guest bytes");
            byte[] all = socket.receivedBytes();
            assertArrayEquals(down, java.util.Arrays.copyOfRange(all, 12, all.length));
            assertArrayEquals(up, hostRead.get(10, TimeUnit.SECONDS));
            hostWrite.get(10, TimeUnit.SECONDS);
            assertEquals(List.of(), guest.violations);
            assertEquals(1, driver.device.stats().hostConnections());
        }
    }

    @Test
    void aGuestThatRefusesMakesTheDeviceCloseTheHostSocketWithoutOk() throws Exception {
        try (GuestDriver driver = GuestDriver.of(dir, RingKind.SPLIT);
             HostEnd host = HostEnd.connect(driver.config.udsPath())) {
            GuestStack guest = new GuestStack(driver);
            host.write("connect 6000\n");
            guest.await(() -> !guest.unmatched.isEmpty(), "the REQUEST");
            VsockPacket request = guest.unmatched.getFirst();
            assertEquals(VsockPacket.REQUEST, request.op());
            assertEquals(6000, request.dstPort());
            // Nobody listens in the guest: it answers RST, as Linux does.
            driver.send(6000, request.srcPort(), VsockPacket.RST, 0, 0, 0, new byte[0], GuestDriver.Split.WHOLE);
            assertArrayEquals(new byte[0], host.readToEnd(), "no OK line, then EOF");
            assertTrue(host.sawEof());
            GuestDriver.deadline(() -> driver.device.stats().open() == 0, "the connection to go");
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"CONNECT\n", "CONNECT x12\n", "CONNECT 4294967296\n", "HELLO 5\n", "CONNECT 1 2\n"})
    void aBadHandshakeLineClosesTheHostSocket(String line) throws Exception {
        try (GuestDriver driver = GuestDriver.of(dir, RingKind.SPLIT);
             HostEnd host = HostEnd.connect(driver.config.udsPath())) {
            host.write(line);
            assertArrayEquals(new byte[0], host.readToEnd());
            assertEquals(0, driver.device.stats().hostConnections());
            assertEquals(List.of(), driver.drain(Duration.ofMillis(100)), "nothing reaches the guest");
        }
    }

    @Test
    void aLineWithoutNewlineWithinTheCapIsRefused() throws Exception {
        try (GuestDriver driver = GuestDriver.of(dir, RingKind.SPLIT);
             HostEnd host = HostEnd.connect(driver.config.udsPath())) {
            host.write("CONNECT " + "1".repeat(HostSide.MAX_LINE));
            assertArrayEquals(new byte[0], host.readToEnd());
        }
    }

    @Test
    void aGuestThatNeverAnswersIsResetAfterTwoSeconds() throws Exception {
        try (GuestDriver driver = GuestDriver.of(dir, RingKind.SPLIT);
             HostEnd host = HostEnd.connect(driver.config.udsPath())) {
            GuestStack guest = new GuestStack(driver);
            host.write("CONNECT 7000\n");
            long start = System.nanoTime();
            guest.await(() -> guest.unmatched.stream().anyMatch(p -> p.op() == VsockPacket.RST), "RST after the timeout");
            long millis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
            assertTrue(millis >= 1900 && millis < 5000, "reset after " + millis + " ms");
            assertTrue(host.sawEof());
        }
    }

    @Test
    void statsLineReportsTheVmsCounters() throws Exception {
        try (GuestDriver driver = GuestDriver.of(dir, RingKind.SPLIT)) {
            GuestStack guest = new GuestStack(driver);
            guest.connectAndWait(1, 4096);
            try (HostEnd host = HostEnd.connect(driver.config.udsPath())) {
                host.write("STATS\n");
                String line = new String(host.readToEnd(), StandardCharsets.US_ASCII);
                assertTrue(line.startsWith("connections guest=0 host=0 open=0 refused=1 rst-sent=1"), line);
                assertTrue(line.endsWith("\n"));
            }
        }
    }

    @Test
    void hostConnectionsBeforeTheRingsRunAreClosed() throws Exception {
        GuestDriver driver = GuestDriver.of(dir, RingKind.SPLIT);
        try (driver) {
            driver.resetDevice();
            try (HostEnd host = HostEnd.connect(driver.config.udsPath())) {
                host.write("CONNECT 5000\n");
                assertArrayEquals(new byte[0], host.readToEnd());
            }
        }
    }
}
