package io.vring.backends.vsock;

import io.vring.backends.vsock.driver.VsockPacket;
import io.vring.engine.RingKind;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;
import org.newsclub.net.unix.AFUNIXDatagramChannel;

import java.nio.channels.ServerSocketChannel;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static io.vring.backends.vsock.GuestToHostTest.bytes;
import static org.junit.jupiter.api.Assertions.*;

/**
 * SOCK_SEQPACKET through the device: a guest message (RW packets up to EOM) is one record on the
 * host's AF_UNIX SOCK_SEQPACKET socket at {@code <uds-path>_<port>}, and a host record one guest
 * message, whatever the descriptor split, the rx buffer size and the credit windows in between.
 */
@Timeout(60)
class SeqpacketTest {
    private static final int PORT = 6000;
    @TempDir
    Path dir;

    static Stream<Arguments> layouts() {
        List<Arguments> all = new ArrayList<>();
        for (RingKind kind : RingKind.values()) {
            all.add(Arguments.of(kind, GuestDriver.Split.HEADER_APART, false, GuestDriver.RxLayout.ONE_BUFFER));
            all.add(Arguments.of(kind, GuestDriver.Split.HEADER_TORN, false, GuestDriver.RxLayout.HEADER_APART));
            all.add(Arguments.of(kind, GuestDriver.Split.SCATTERED, true, GuestDriver.RxLayout.SCATTERED));
            all.add(Arguments.of(kind, GuestDriver.Split.WHOLE, false, GuestDriver.RxLayout.SCATTERED));
        }
        return all.stream();
    }

    @ParameterizedTest(name = "{0} tx {1} indirect {2} rx {3}")
    @MethodSource("layouts")
    void everyMessageIsOneRecordAndEveryRecordOneMessageWhateverTheSplits(RingKind kind, GuestDriver.Split split,
                                                                         boolean indirect, GuestDriver.RxLayout rx)
            throws Exception {
        long seed = 20261125L + kind.ordinal() * 31 + split.ordinal();
        System.out.println("seed " + seed);
        SplittableRandom random = new SplittableRandom(seed);
        try (GuestDriver driver = new GuestDriver(dir, kind, indirect, 64 * 1024, rx, 4096, seed);
             AFUNIXDatagramChannel listener = SeqpacketHostEnd.listen(driver.config.listenerPath(PORT))) {
            SeqpacketGuest guest = SeqpacketGuest.negotiated(driver);
            guest.split = split;
            SeqpacketGuest.Socket socket = guest.connect(PORT, SeqpacketGuest.TYPE, 256 * 1024);
            assertTrue(socket.established, "RESPONSE expected: " + socket.log);
            try (SeqpacketHostEnd host = SeqpacketHostEnd.accept(listener)) {
                // Guest to host: sizes from 1 byte to just under buf_alloc, in packets of random size.
                List<byte[]> up = new ArrayList<>();
                for (int i = 0; i < 40; i++) {
                    byte[] message = bytes(random, i == 0 ? 1 : i == 1 ? 64 * 1024 : 1 + random.nextInt(20_000));
                    up.add(message);
                    socket.sendMessage(message, 1 + random.nextInt(16 * 1024), random.nextBoolean());
                    if (i % 8 == 7) {
                        for (int j = i - 7; j <= i; j++) {
                            assertArrayEquals(up.get(j), host.receive(), "record " + j + " is message " + j);
                        }
                    }
                }
                // Host to guest: records up to 200 KiB cross 4 KiB rx buffers as one message each.
                List<byte[]> down = new ArrayList<>();
                for (int i = 0; i < 30; i++) {
                    down.add(bytes(random, i == 0 ? 1 : i == 1 ? 200 * 1024 : 1 + random.nextInt(30_000)));
                }
                // The host program sends on its own thread: its socket fills while the guest reads.
                try (ExecutorService hostThread = Executors.newVirtualThreadPerTaskExecutor()) {
                    Future<?> sending = hostThread.submit(() -> {
                        for (byte[] record : down) {
                            host.send(record);
                        }
                        return null;
                    });
                    guest.await(() -> socket.messages.size() == down.size(), "every host record");
                    sending.get(10, TimeUnit.SECONDS);
                }
                for (int i = 0; i < down.size(); i++) {
                    SeqpacketGuest.Message message = socket.messages.get(i);
                    assertArrayEquals(down.get(i), message.bytes(), "message " + i + " is record " + i);
                    assertTrue(message.eor(), "a host record ends a record: EOR with the EOM");
                    int pieces = (down.get(i).length + 4096 - VsockPacket.HEADER - 1) / (4096 - VsockPacket.HEADER);
                    assertTrue(message.packets() >= pieces, "record " + i + " of " + down.get(i).length
                            + " bytes came in " + message.packets() + " packets");
                }
            }
            assertEquals(List.of(), guest.violations);
            VsockStats.Snapshot stats = driver.device.stats();
            assertEquals(40, stats.messagesGuestToHost(), stats.toString());
            assertEquals(30, stats.messagesHostToGuest(), stats.toString());
            assertEquals(0, stats.malformed(), stats.toString());
        }
    }

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void aHostRecordWaitsMidMessageForTheGuestsCreditAndArrivesWhole(RingKind kind) throws Exception {
        try (GuestDriver driver = new GuestDriver(dir, kind, false, 64 * 1024, GuestDriver.RxLayout.ONE_BUFFER, 4096, 1);
             AFUNIXDatagramChannel listener = SeqpacketHostEnd.listen(driver.config.listenerPath(PORT))) {
            SeqpacketGuest guest = SeqpacketGuest.negotiated(driver);
            SeqpacketGuest.Socket socket = guest.connect(PORT, SeqpacketGuest.TYPE, 16 * 1024);
            socket.autoRead = false;
            SplittableRandom random = new SplittableRandom(3);
            byte[] first = bytes(random, 12 * 1024);
            byte[] second = bytes(random, 10 * 1024);
            try (SeqpacketHostEnd host = SeqpacketHostEnd.accept(listener)) {
                host.send(first);
                host.send(second);
                // 16 KiB of credit: all of the first record, 4 KiB of the second, then the device asks.
                guest.await(() -> socket.creditRequests > 0, "a CREDIT_REQUEST when the window is full");
                guest.settle(Duration.ofMillis(100));
                assertEquals(1, socket.messages.size(), "only the first message is whole");
                assertTrue(socket.stalledMidMessage, "the stall came in the middle of the second message");
                assertEquals(16 * 1024, socket.receivedTotal, "exactly the guest's window, no more");
                socket.read();
                socket.send(VsockPacket.CREDIT_UPDATE, 0, new byte[0]);
                guest.await(() -> socket.messages.size() == 2, "the rest of the second message");
                assertArrayEquals(first, socket.messages.get(0).bytes());
                assertArrayEquals(second, socket.messages.get(1).bytes());
            }
            assertEquals(List.of(), guest.violations);
            assertTrue(driver.device.stats().creditStalls() >= 1);
        }
    }

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void guestMessagesTheHostCannotTakeYetWaitWholeAndFwdCntCountsOnlyWhatItTook(RingKind kind) throws Exception {
        int bufAlloc = 32 * 1024;
        try (GuestDriver driver = new GuestDriver(dir, kind, false, bufAlloc, GuestDriver.RxLayout.ONE_BUFFER, 4096, 1);
             AFUNIXDatagramChannel listener = SeqpacketHostEnd.listen(driver.config.listenerPath(PORT))) {
            SeqpacketGuest guest = SeqpacketGuest.negotiated(driver);
            SeqpacketGuest.Socket socket = guest.connect(PORT, SeqpacketGuest.TYPE, 64 * 1024);
            SplittableRandom random = new SplittableRandom(5);
            try (SeqpacketHostEnd host = SeqpacketHostEnd.accept(listener)) {
                // The host reads nothing: its socket fills, then the device's backlog, then the guest's credit.
                List<byte[]> sent = new ArrayList<>();
                long bytesSent = 0;
                while (true) {
                    guest.settle(Duration.ofMillis(2));
                    byte[] message = bytes(random, 3000 + random.nextInt(9000));
                    if (socket.peerFree() < message.length) {
                        guest.settle(Duration.ofMillis(200));
                        if (socket.peerFree() < message.length) {
                            break;
                        }
                    }
                    socket.sendMessage(message, 4096, false);
                    sent.add(message);
                    bytesSent += message.length;
                    assertTrue(sent.size() < 1000, "the device never ran out of credit");
                }
                guest.settle(Duration.ofMillis(200));
                long forwarded = Integer.toUnsignedLong(socket.peerFwdCnt);
                assertTrue(forwarded < bytesSent, "fwd_cnt " + forwarded + " counts only what the host socket took, of "
                        + bytesSent);
                assertTrue(bytesSent - forwarded <= bufAlloc, "at most buf_alloc bytes wait in the device");
                // Every record that was taken so far is a whole message, and the rest follow as the host reads.
                for (int i = 0; i < sent.size(); i++) {
                    assertArrayEquals(sent.get(i), host.receive(), "record " + i);
                }
                guest.await(() -> Integer.toUnsignedLong(socket.peerFwdCnt) == sent.stream().mapToLong(m -> m.length).sum(),
                        "fwd_cnt to cover every message once the host read them");
            }
            assertEquals(List.of(), guest.violations);
            assertEquals(0, driver.device.stats().malformed());
        }
    }

    @Test
    void aStreamListenerOrNoListenerRefusesASeqpacketConnectAtOnce() throws Exception {
        try (GuestDriver driver = GuestDriver.of(dir, RingKind.SPLIT);
             ServerSocketChannel stream = HostEnd.listen(driver.config.listenerPath(PORT))) {
            SeqpacketGuest guest = SeqpacketGuest.negotiated(driver);
            long start = System.nanoTime();
            SeqpacketGuest.Socket wrongType = guest.connect(PORT, SeqpacketGuest.TYPE, 65536);
            SeqpacketGuest.Socket nobody = guest.connect(PORT + 1, SeqpacketGuest.TYPE, 65536);
            long millis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
            assertTrue(wrongType.reset && !wrongType.established, "RST expected: " + wrongType.log);
            assertTrue(nobody.reset && !nobody.established, "RST expected: " + nobody.log);
            assertEquals(SeqpacketGuest.TYPE, wrongType.log.getLast().type(), "the RST has the request's type");
            assertTrue(millis < 1000, "the RSTs took " + millis + " ms");
            stream.configureBlocking(false);
            assertNull(stream.accept(), "the stream listener got no connection");
            assertEquals(2, driver.device.stats().refused());
            assertEquals(0, driver.device.stats().open());
        }
    }

    @Test
    void aGuestThatDidNotAckTheFeatureGetsRstForASeqpacketRequest() throws Exception {
        try (GuestDriver driver = GuestDriver.of(dir, RingKind.SPLIT);
             AFUNIXDatagramChannel listener = SeqpacketHostEnd.listen(driver.config.listenerPath(PORT))) {
            assertTrue((driver.device.features() & 1L << VsockDevice.F_SEQPACKET) != 0, "the device offers SEQPACKET");
            SeqpacketGuest guest = new SeqpacketGuest(driver); // the driver acked only VERSION_1 and ring features
            SeqpacketGuest.Socket socket = guest.connect(PORT, SeqpacketGuest.TYPE, 65536);
            assertTrue(socket.reset, "RST expected: " + socket.log);
            assertEquals(1, driver.device.stats().malformed());
            assertEquals(0, driver.device.stats().open());
            SeqpacketGuest.Socket stream = guest.connect(PORT + 1, VsockPacket.STREAM, 65536);
            assertTrue(stream.reset, "and a stream connect to a port with no stream listener is refused too");
        }
    }

    @Test
    void malformedSeqpacketInputIsResetAndTheOtherConnectionsGoOn() throws Exception {
        int bufAlloc = 16 * 1024;
        try (GuestDriver driver = new GuestDriver(dir, RingKind.SPLIT, false, bufAlloc, GuestDriver.RxLayout.ONE_BUFFER, 4096, 1);
             AFUNIXDatagramChannel listener = SeqpacketHostEnd.listen(driver.config.listenerPath(PORT));
             ServerSocketChannel streamListener = HostEnd.listen(driver.config.listenerPath(PORT + 1))) {
            SeqpacketGuest guest = SeqpacketGuest.negotiated(driver);
            SeqpacketGuest.Socket bystander = guest.connect(PORT, SeqpacketGuest.TYPE, 65536);
            SeqpacketHostEnd bystanderHost = SeqpacketHostEnd.accept(listener);
            SeqpacketGuest.Socket stream = guest.connect(PORT + 1, VsockPacket.STREAM, 65536);
            try (HostEnd streamHost = HostEnd.accept(streamListener)) {
                // EOM on a stream RW means nothing there: the bytes go through.
                stream.send(VsockPacket.RW, SeqpacketGuest.EOM | SeqpacketGuest.EOR, "abc".getBytes());
                stream.txCnt += 3;
                assertArrayEquals("abc".getBytes(), streamHost.read(3));
                // A SEQPACKET RW on the stream connection: RST.
                driver.send(new VsockPacket(GuestDriver.GUEST_CID, VsockHeader.HOST_CID, stream.guestPort, stream.hostPort,
                        SeqpacketGuest.TYPE, VsockPacket.RW, SeqpacketGuest.EOM, 65536, 0, new byte[5]), GuestDriver.Split.WHOLE);
                guest.await(() -> stream.reset, "RST for a SEQPACKET packet on a stream connection");
                assertTrue(streamHost.sawEof(), "and its host socket is closed");
            }
            // A message longer than buf_alloc, sent within credit (the guest returned none of it): RST.
            SeqpacketHostEnd bigHost;
            SeqpacketGuest.Socket big = guest.connect(PORT, SeqpacketGuest.TYPE, 65536);
            bigHost = SeqpacketHostEnd.accept(listener);
            big.send(VsockPacket.RW, 0, new byte[bufAlloc]);
            big.send(VsockPacket.RW, SeqpacketGuest.EOM, new byte[1]);
            guest.await(() -> big.reset, "RST for a message over buf_alloc");
            assertNull(bigHost.receive(), "the host saw no record, only the end");
            bigHost.close();
            // A host record longer than the guest's buf_alloc could never be read: RST.
            SeqpacketGuest.Socket small = guest.connect(PORT, SeqpacketGuest.TYPE, 4096);
            try (SeqpacketHostEnd smallHost = SeqpacketHostEnd.accept(listener)) {
                smallHost.send(new byte[4097]);
                guest.await(() -> small.reset, "RST for a host record over the guest's buf_alloc");
                assertTrue(small.messages.isEmpty(), "nothing of it reached the guest: " + small.log);
            }
            // The bystander still carries messages both ways.
            bystander.sendMessage("ping".getBytes(), 2, true);
            assertArrayEquals("ping".getBytes(), bystanderHost.receive());
            bystanderHost.send("pong".getBytes());
            guest.await(() -> bystander.messages.size() == 1, "pong");
            assertArrayEquals("pong".getBytes(), bystander.messages.getFirst().bytes());
            assertFalse(bystander.reset);
            bystanderHost.close();
            assertEquals(2, driver.device.stats().malformed(), driver.device.stats().toString());
        }
    }

    @Test
    void closesAreHalfClosesEachWayAndNoMessageIsLostBeforeThem() throws Exception {
        try (GuestDriver driver = GuestDriver.of(dir, RingKind.PACKED);
             AFUNIXDatagramChannel listener = SeqpacketHostEnd.listen(driver.config.listenerPath(PORT))) {
            SeqpacketGuest guest = SeqpacketGuest.negotiated(driver);
            SeqpacketGuest.Socket socket = guest.connect(PORT, SeqpacketGuest.TYPE, 65536);
            SeqpacketHostEnd host = SeqpacketHostEnd.accept(listener);
            // The guest closes its sending half: the host reads what came before, then EOF; it may still send.
            socket.sendMessage("zero".getBytes(), 100, false);
            socket.send(VsockPacket.SHUTDOWN, VsockPacket.SHUTDOWN_SEND, new byte[0]);
            assertArrayEquals("zero".getBytes(), host.receive());
            assertNull(host.receive(), "EOF after the guest's SHUTDOWN(SEND)");
            host.send("one".getBytes());
            host.send("two".getBytes());
            host.close();
            guest.await(() -> (socket.peerShutdown & VsockPacket.SHUTDOWN_SEND) != 0, "SHUTDOWN(SEND) after the host's close");
            assertEquals(2, socket.messages.size(), "both records before the end");
            assertArrayEquals("one".getBytes(), socket.messages.get(0).bytes());
            assertArrayEquals("two".getBytes(), socket.messages.get(1).bytes());
            socket.send(VsockPacket.SHUTDOWN, VsockPacket.SHUTDOWN_RCV | VsockPacket.SHUTDOWN_SEND, new byte[0]);
            guest.await(() -> socket.reset, "the final RST");
            assertEquals(0, driver.device.stats().open());
            assertEquals(List.of(), guest.violations);
        }
    }

    @Test
    void aDeviceResetClosesEveryHostSocketAndTheDevicesCloseEndsItsSeqpacketThread() throws Exception {
        List<SeqpacketHostEnd> hosts = new ArrayList<>();
        try (GuestDriver driver = GuestDriver.of(dir, RingKind.SPLIT);
             AFUNIXDatagramChannel listener = SeqpacketHostEnd.listen(driver.config.listenerPath(PORT))) {
            SeqpacketGuest guest = SeqpacketGuest.negotiated(driver);
            for (int i = 0; i < 3; i++) {
                SeqpacketGuest.Socket socket = guest.connect(PORT, SeqpacketGuest.TYPE, 65536);
                assertTrue(socket.established);
                hosts.add(SeqpacketHostEnd.accept(listener));
                socket.sendMessage(new byte[] {(byte) i}, 1, false);
            }
            assertTrue(seqpacketThreads() >= 1, "the SEQPACKET thread runs once a connection exists");
            driver.resetDevice();
            for (int i = 0; i < 3; i++) {
                assertArrayEquals(new byte[] {(byte) i}, hosts.get(i).receive(), "what came before the reset");
                assertNull(hosts.get(i).receive(), "the guest is gone: the host socket is closed");
            }
            assertEquals(0, driver.device.stats().open());
        } finally {
            for (SeqpacketHostEnd host : hosts) {
                host.close();
            }
        }
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (seqpacketThreads() > 0 && System.nanoTime() < end) {
            Thread.sleep(10);
        }
        assertEquals(0, seqpacketThreads(), "closing the device ends its SEQPACKET thread");
    }

    private static long seqpacketThreads() {
        return Thread.getAllStackTraces().keySet().stream().filter(t -> t.getName().startsWith("vsock-seqpacket-")).count();
    }
}
