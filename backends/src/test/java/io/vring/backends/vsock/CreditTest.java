package io.vring.backends.vsock;

import io.vring.backends.vsock.driver.VsockPacket;
import io.vring.engine.RingKind;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.nio.channels.ServerSocketChannel;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Credit flow control both ways: the device never sends more than the guest's window, asks for
 * credit when it has data and none, and carries on the moment credit returns; it advertises its own
 * window and refreshes it as the host drains it.
 */
@Timeout(60)
class CreditTest {
    private static final int PORT = 2000;
    @TempDir
    Path dir;

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void withZeroCreditTheDeviceAsksOnceAndSendsNothingUntilCreditComes(RingKind kind) throws Exception {
        try (GuestDriver driver = GuestDriver.of(dir, kind);
             ServerSocketChannel server = HostEnd.listen(driver.config.listenerPath(PORT))) {
            GuestStack guest = new GuestStack(driver);
            GuestSocket socket = guest.connectAndWait(PORT, 0);
            socket.autoConsume = false;
            try (HostEnd host = HostEnd.accept(server)) {
                byte[] data = GuestToHostTest.bytes(new SplittableRandom(3), 10_000);
                host.write(data);
                guest.await(() -> socket.creditRequests() == 1, "CREDIT_REQUEST");
                guest.settle(Duration.ofMillis(200));
                assertEquals(0, socket.receivedTotal(), "no RW without credit");
                assertEquals(1, socket.creditRequests(), "one CREDIT_REQUEST per stall; the guest's 0 answer does not end it");
                assertEquals(1, driver.device.stats().creditStalls());

                // Credit returns in three slices; each is used to the byte and no further.
                for (int window : new int[] {4096, 8192, 10_000}) {
                    socket.bufAlloc(window);
                    socket.sendCredit();
                    long expected = Math.min(window, data.length);
                    guest.await(() -> socket.receivedTotal() == expected, window + " bytes of credit used");
                    guest.settle(Duration.ofMillis(50));
                    assertEquals(expected, socket.receivedTotal(), "never past the window");
                }
                assertArrayEquals(data, socket.receivedBytes());
                assertEquals(List.of(), guest.violations);
            }
        }
    }

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void aSmallGuestWindowThatKeepsReturningCarriesAMegabyteWithoutStallOrOverrun(RingKind kind) throws Exception {
        try (GuestDriver driver = GuestDriver.of(dir, kind);
             ServerSocketChannel server = HostEnd.listen(driver.config.listenerPath(PORT));
             ExecutorService io = Executors.newVirtualThreadPerTaskExecutor()) {
            GuestStack guest = new GuestStack(driver);
            GuestSocket socket = guest.connectAndWait(PORT, 6000);
            try (HostEnd host = HostEnd.accept(server)) {
                byte[] data = GuestToHostTest.bytes(new SplittableRandom(5), 1 << 20);
                Future<?> write = io.submit(() -> {
                    host.write(data);
                    return null;
                });
                guest.await(() -> socket.receivedTotal() == data.length, "the whole megabyte");
                write.get(10, TimeUnit.SECONDS);
                assertArrayEquals(data, socket.receivedBytes());
                assertEquals(List.of(), guest.violations);
            }
        }
    }

    @Test
    void aGuestThatClosesDuringAStallFreesTheHostSocket() throws Exception {
        try (GuestDriver driver = GuestDriver.of(dir, RingKind.SPLIT);
             ServerSocketChannel server = HostEnd.listen(driver.config.listenerPath(PORT))) {
            GuestStack guest = new GuestStack(driver);
            GuestSocket socket = guest.connectAndWait(PORT, 0);
            try (HostEnd host = HostEnd.accept(server)) {
                host.write(new byte[5000]);
                guest.await(() -> socket.creditRequests() == 1, "the stall");
                socket.send(VsockPacket.RST, 0, new byte[0]);
                assertTrue(host.sawEof(), "host socket closed");
                GuestDriver.deadline(() -> driver.device.stats().open() == 0, "the connection to go");
                guest.settle(Duration.ofMillis(100));
                assertEquals(0, socket.receivedTotal());
                assertEquals(VsockPacket.CREDIT_REQUEST, socket.last().op(), "nothing after the stall's request, and no RST for an RST");
            }
        }
    }

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void theDeviceAdvertisesItsBufferAndRefreshesItAsTheHostReads(RingKind kind) throws Exception {
        int txBuffer = 16 * 1024;
        try (GuestDriver driver = new GuestDriver(dir, kind, false, txBuffer, GuestDriver.RxLayout.ONE_BUFFER, 4096, 1);
             ServerSocketChannel server = HostEnd.listen(driver.config.listenerPath(PORT))) {
            GuestStack guest = new GuestStack(driver);
            GuestSocket socket = guest.connectAndWait(PORT, 65536);
            assertEquals(txBuffer, socket.peerBufAlloc(), "buf_alloc in RESPONSE is --tx-buffer-size");
            try (HostEnd host = HostEnd.accept(server)) {
                // The host does not read: its socket buffer fills, then the device's backlog, then the credit ends.
                byte[] data = GuestToHostTest.bytes(new SplittableRandom(9), 2 << 20);
                int sent = 0;
                long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
                while (System.nanoTime() < end) {
                    guest.pump();
                    int n = socket.writeSome(data, sent, 4096);
                    sent += n;
                    if (n == 0 && socket.peerFree() == 0) {
                        guest.settle(Duration.ofMillis(100));
                        if (socket.peerFree() == 0) {
                            break;
                        }
                    }
                }
                assertEquals(0, socket.peerFree(), "the guest ran out of credit while the host did not read");
                assertTrue(sent < data.length, "sent " + sent);
                int stalledAt = sent;
                // Now the host reads everything; credit updates let the guest finish.
                try (ExecutorService io = Executors.newVirtualThreadPerTaskExecutor()) {
                    Future<byte[]> read = io.submit(() -> host.read(data.length));
                    socket.write(java.util.Arrays.copyOfRange(data, stalledAt, data.length), 4096);
                    assertArrayEquals(data, read.get(10, TimeUnit.SECONDS));
                }
                assertTrue(socket.creditUpdates() > 0, "CREDIT_UPDATEs refreshed the window");
            }
        }
    }

    @Test
    void aGuestThatSendsPastItsCreditIsReset() throws Exception {
        int txBuffer = 8192;
        try (GuestDriver driver = new GuestDriver(dir, RingKind.SPLIT, false, txBuffer, GuestDriver.RxLayout.ONE_BUFFER, 4096, 1);
             ServerSocketChannel server = HostEnd.listen(driver.config.listenerPath(PORT))) {
            GuestStack guest = new GuestStack(driver);
            GuestSocket socket = guest.connectAndWait(PORT, 65536);
            try (HostEnd host = HostEnd.accept(server)) {
                // Fill the host socket's buffer first so the device has to keep bytes, then overrun.
                byte[] chunk = new byte[4096];
                for (int i = 0; i < 2000 && !socket.reset(); i++) {
                    socket.send(VsockPacket.RW, 0, chunk);
                    guest.pump();
                }
                guest.await(() -> socket.reset(), "RST for the overrun");
                assertTrue(host.sawEof(), "the host socket is closed");
                assertTrue(driver.device.stats().malformed() >= 1);
            }
        }
    }
}
