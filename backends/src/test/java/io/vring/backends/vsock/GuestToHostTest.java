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

import java.nio.channels.ServerSocketChannel;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/** A guest connects to CID 2 port P and reaches the host program listening on {@code <uds-path>_P}. */
@Timeout(60)
class GuestToHostTest {
    @TempDir
    Path dir;

    static Stream<Arguments> layouts() {
        List<Arguments> all = new ArrayList<>();
        for (RingKind kind : RingKind.values()) {
            for (GuestDriver.Split split : GuestDriver.Split.values()) {
                all.add(Arguments.of(kind, split, false, GuestDriver.RxLayout.ONE_BUFFER));
            }
            all.add(Arguments.of(kind, GuestDriver.Split.SCATTERED, true, GuestDriver.RxLayout.SCATTERED));
            all.add(Arguments.of(kind, GuestDriver.Split.HEADER_TORN, false, GuestDriver.RxLayout.HEADER_APART));
        }
        return all.stream();
    }

    @ParameterizedTest(name = "{0} tx {1} indirect {2} rx {3}")
    @MethodSource("layouts")
    void dataCrossesBothWaysIntactWhateverTheDescriptorSplit(RingKind kind, GuestDriver.Split split, boolean indirect,
                                                             GuestDriver.RxLayout rxLayout) throws Exception {
        long seed = 42;
        System.out.println("seed " + seed);
        try (GuestDriver driver = new GuestDriver(dir, kind, indirect, 64 * 1024, rxLayout, 4096, seed);
             ServerSocketChannel server = HostEnd.listen(driver.config.listenerPath(1234))) {
            GuestStack guest = new GuestStack(driver);
            guest.split(split);
            GuestSocket socket = guest.connectAndWait(1234, 64 * 1024);
            assertTrue(socket.established(), "RESPONSE expected, got " + socket.log);
            try (HostEnd host = HostEnd.accept(server);
                 ExecutorService reader = Executors.newVirtualThreadPerTaskExecutor()) {
                SplittableRandom random = new SplittableRandom(seed);
                byte[] up = bytes(random, 300_000);
                byte[] down = bytes(random, 500_000);
                // More than the host socket buffer plus the device's backlog: the host must read meanwhile.
                Future<byte[]> hostRead = reader.submit(() -> host.read(up.length));
                socket.write(up, 16 * 1024);
                assertArrayEquals(up, hostRead.get(10, TimeUnit.SECONDS), "guest-to-host bytes");
                Future<?> hostWrite = reader.submit(() -> {
                    host.write(down);
                    return null;
                });
                guest.await(() -> socket.receivedTotal() == down.length, "host-to-guest bytes");
                assertArrayEquals(down, socket.receivedBytes(), "host-to-guest bytes");
                hostWrite.get(10, TimeUnit.SECONDS);
            }
            assertEquals(List.of(), guest.violations);
            VsockStats.Snapshot stats = driver.device.stats();
            assertEquals(300_000, stats.bytesGuestToHost());
            assertEquals(500_000, stats.bytesHostToGuest());
            assertEquals(0, stats.malformed());
        }
    }

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void aPortNobodyListensOnIsRefusedWithAnRstAtOnce(RingKind kind) throws Exception {
        try (GuestDriver driver = GuestDriver.of(dir, kind)) {
            GuestStack guest = new GuestStack(driver);
            long start = System.nanoTime();
            GuestSocket socket = guest.connectAndWait(4321, 65536);
            long millis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
            assertTrue(socket.reset(), "RST expected, got " + socket.log);
            assertFalse(socket.established());
            VsockPacket rst = socket.last();
            assertEquals(4321, rst.srcPort());
            assertEquals(socket.guestPort, rst.dstPort());
            assertTrue(millis < 1000, "RST took " + millis + " ms; a guest connect() would have timed out at 2 s");
            assertEquals(1, driver.device.stats().refused());
            assertEquals(0, driver.device.stats().open());
        }
    }

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void manyConnectionsAreMultiplexedAndEachCarriesItsOwnBytes(RingKind kind) throws Exception {
        long seed = 7;
        System.out.println("seed " + seed);
        int connections = 40;
        int size = 96 * 1024;
        try (GuestDriver driver = new GuestDriver(dir, kind, true, 32 * 1024, GuestDriver.RxLayout.ONE_BUFFER, 4096, seed);
             ServerSocketChannel server = HostEnd.listen(driver.config.listenerPath(9000));
             ExecutorService hosts = Executors.newVirtualThreadPerTaskExecutor()) {
            GuestStack guest = new GuestStack(driver);
            guest.split(GuestDriver.Split.SCATTERED);
            SplittableRandom random = new SplittableRandom(seed);
            List<GuestSocket> sockets = new ArrayList<>();
            List<byte[]> ups = new ArrayList<>();
            for (int i = 0; i < connections; i++) {
                sockets.add(guest.connect(9000, 16 * 1024));
                ups.add(bytes(random, size));
            }
            // Each host program echoes what it reads, reversed, then half-closes.
            List<Future<byte[]>> echoed = new ArrayList<>();
            for (int i = 0; i < connections; i++) {
                HostEnd host = HostEnd.accept(server);
                echoed.add(hosts.submit(() -> {
                    try (host) {
                        byte[] got = host.read(size);
                        host.write(reversed(got));
                        host.channel.shutdownOutput();
                        return got;
                    }
                }));
            }
            guest.await(() -> sockets.stream().allMatch(s -> s.established()), "every RESPONSE");
            int[] sent = new int[connections];
            guest.await(() -> {
                for (int i = 0; i < connections; i++) {
                    sent[i] += sockets.get(i).writeSome(ups.get(i), sent[i], 8 * 1024);
                }
                return sockets.stream().allMatch(s -> (s.peerShutdown() & VsockPacket.SHUTDOWN_SEND) != 0);
            }, "every host to finish");
            for (int i = 0; i < connections; i++) {
                assertArrayEquals(ups.get(i), echoed.get(i).get(10, TimeUnit.SECONDS), "guest-to-host, connection " + i);
                assertArrayEquals(reversed(ups.get(i)), sockets.get(i).receivedBytes(), "host-to-guest, connection " + i);
            }
            assertEquals(List.of(), guest.violations);
            assertEquals(connections, driver.device.stats().guestConnections());
        }
    }

    @Test
    void theDeviceDescribesItselfAsAVsockDeviceForQemuAndCrosvm() throws Exception {
        try (GuestDriver driver = GuestDriver.of(dir, RingKind.SPLIT)) {
            VsockDevice device = driver.device;
            assertEquals(3, device.queueCount(), "rx, tx, event");
            assertEquals(8, device.configSize());
            byte[] config = new byte[8];
            device.readConfig(0, config);
            assertArrayEquals(new byte[] {3, 0, 0, 0, 0, 0, 0, 0}, config, "le64 guest_cid");
            byte[] upper = new byte[4];
            device.readConfig(4, upper);
            assertArrayEquals(new byte[4], upper);
            long features = device.features();
            for (int bit : new int[] {32, 29, 34, 28}) {
                assertTrue((features & (1L << bit)) != 0, "feature bit " + bit);
            }
            assertTrue((features & 1L << VsockDevice.F_SEQPACKET) != 0, "VIRTIO_VSOCK_F_SEQPACKET");
            assertEquals(1L << 9 | 1L << 19, device.protocolFeatures(),
                    "CONFIG and DEVICE_STATE: no INFLIGHT_SHMFD, a stream cannot be replayed");
            assertEquals(0, device.process(VsockDevice.EVENT_QUEUE, null), "the event queue is never consumed");
        }
    }

    static byte[] bytes(SplittableRandom random, int n) {
        byte[] bytes = new byte[n];
        for (int i = 0; i < n; i++) {
            bytes[i] = (byte) random.nextInt(256);
        }
        return bytes;
    }

    static byte[] reversed(byte[] bytes) {
        byte[] out = Arrays.copyOf(bytes, bytes.length);
        for (int i = 0; i < out.length / 2; i++) {
            byte t = out[i];
            out[i] = out[out.length - 1 - i];
            out[out.length - 1 - i] = t;
        }
        return out;
    }

    static void settle(GuestStack guest) {
        guest.settle(Duration.ofMillis(200));
    }
}
