package io.vring.backends.vsock.driver;

import io.vring.backends.vsock.VsockConfig;
import io.vring.backends.vsock.VsockDevice;
import io.vring.engine.RingKind;
import io.vring.protocol.BackendServer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.newsclub.net.unix.AFSocketType;
import org.newsclub.net.unix.AFUNIXDatagramChannel;
import org.newsclub.net.unix.AFUNIXSelectorProvider;
import org.newsclub.net.unix.AFUNIXSocketAddress;

import java.nio.ByteBuffer;
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
import java.util.concurrent.locks.LockSupport;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The driver's SEQPACKET connections against vring's {@link VsockDevice} over vhost-user, with a host
 * program on an AF_UNIX SOCK_SEQPACKET socket (junixsocket): messages keep their boundaries both
 * ways, whatever the 4 KiB rx buffers and the credit windows cut them into.
 */
@Timeout(60)
class VsockDriverSeqpacketTest {
    private static final int HOST_PORT = 2345;
    private static final int UNSOLICITED = 40;

    @TempDir
    Path dir;
    private VsockDevice device;
    private BackendServer server;

    @AfterEach
    void stop() {
        if (server != null) {
            server.close();
        }
        if (device != null) {
            device.close();
        }
    }

    @ParameterizedTest
    @EnumSource(RingKind.class)
    void messagesKeepTheirBoundariesBothWaysAndEndWithTheHostsClose(RingKind kind) throws Exception {
        long seed = System.nanoTime();
        System.out.println("seed " + seed);
        SplittableRandom random = new SplittableRandom(seed);
        VsockConfig config = VsockConfig.of(42, dir.resolve("vhost.sock"), dir.resolve("vm.vsock"));
        device = VsockDevice.open(config);
        server = BackendServer.listen(config.socket(), device);
        List<byte[]> unsolicited = new ArrayList<>();
        for (int i = 0; i < UNSOLICITED; i++) {
            unsolicited.add(bytes(random, 1 + random.nextInt(100)));
        }
        try (VsockDriver driver = VsockDriver.connect(config.socket(), VsockDriverConfig.defaults()
                .withPacked(kind == RingKind.PACKED).withTimeouts(Duration.ofSeconds(5), Duration.ofSeconds(20),
                        Duration.ofSeconds(2)));
             AFUNIXDatagramChannel listener = AFUNIXSelectorProvider.provider().openDatagramChannel(AFSocketType.SOCK_SEQPACKET);
             ExecutorService host = Executors.newVirtualThreadPerTaskExecutor()) {
            assertTrue(driver.seqpacket(), "the device offers VIRTIO_VSOCK_F_SEQPACKET and the driver acked it");
            listener.bind(AFUNIXSocketAddress.of(config.listenerPath(HOST_PORT).toFile()));
            listener.socket().listen(1);
            // The host program sends some records first, then echoes every record until the guest's EOF.
            Future<Integer> echoed = host.submit(() -> {
                AFUNIXDatagramChannel channel = (AFUNIXDatagramChannel) listener.socket().accept().getChannel();
                for (byte[] record : unsolicited) {
                    channel.write(ByteBuffer.wrap(record));
                }
                ByteBuffer record = ByteBuffer.allocate(128 * 1024);
                int count = 0;
                for (int n; (n = channel.read(record.clear())) > 0; count++) {
                    assertEquals(n, channel.write(record.flip()));
                }
                channel.close();
                return count;
            });
            VsockStream connection = driver.connectSeqpacket(HOST_PORT);
            assertEquals(VsockPacket.SEQPACKET, connection.type());
            long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (connection.messagesAvailable() < UNSOLICITED && System.nanoTime() < end) {
                driver.poll();
                LockSupport.parkNanos(100_000);
            }
            byte[] in = new byte[128 * 1024];
            for (int i = 0; i < UNSOLICITED; i++) {
                int n = connection.receiveMessage(in, 0, in.length);
                assertArrayEquals(unsolicited.get(i), Arrays.copyOf(in, n), "queued message " + i);
                assertTrue(connection.lastMessageEor(), "a host record is a whole record");
            }
            for (int i = 0; i < 60; i++) {
                byte[] message = bytes(random, i == 0 ? 65536 : 1 + random.nextInt(65536));
                connection.sendMessage(message, 0, message.length, random.nextBoolean());
                int n = connection.receiveMessage(in, 0, in.length);
                assertEquals(message.length, n, "message " + i + " came back as one message of its length");
                assertArrayEquals(message, Arrays.copyOf(in, n), "message " + i);
            }
            byte[] tooLong = new byte[65537];
            assertThrows(IllegalArgumentException.class, () -> connection.sendMessage(tooLong, 0, tooLong.length, false),
                    "longer than the device's buf_alloc: EMSGSIZE");
            assertThrows(IllegalStateException.class, () -> connection.read(in, 0, 1), "bytes calls are for streams");
            connection.shutdownOutput();
            assertEquals(-1, connection.receiveMessage(in, 0, in.length), "the host closed after the guest's EOF");
            assertEquals(60, echoed.get(10, TimeUnit.SECONDS));
            connection.close();
            assertEquals(0, driver.protocolViolations() + driver.creditOverruns());
        }
        assertEquals(60, device.stats().messagesGuestToHost());
        assertEquals(60 + UNSOLICITED, device.stats().messagesHostToGuest());
    }

    private static byte[] bytes(SplittableRandom random, int n) {
        byte[] bytes = new byte[n];
        for (int i = 0; i < n; i++) {
            bytes[i] = (byte) random.nextInt(256);
        }
        return bytes;
    }
}
