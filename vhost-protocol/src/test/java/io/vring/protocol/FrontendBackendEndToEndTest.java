package io.vring.protocol;

import io.vring.engine.RingKind;
import io.vring.protocol.message.DeviceConfig;
import io.vring.protocol.message.ProtocolFeatures;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Our front-end ({@link FrontendDevice}) driving our back-end ({@link BackendServer} serving an
 * {@link EchoBackend}) over a real socket: data through the rings both ways, checked byte for byte,
 * for split and packed rings in eventfd and busy-poll mode; memory regions added and removed while
 * another ring carries traffic; a device state saved in one back-end and loaded into a fresh one;
 * and no fd left open afterwards.
 */
class FrontendBackendEndToEndTest {
    private static final Duration LIMIT = Duration.ofSeconds(60);
    private static final long SEED = Long.getLong("vring.seed", System.nanoTime());

    private Path dir;
    private long fdsBefore;
    private java.util.Set<String> fdNamesBefore;

    @BeforeAll
    static void printSeed() {
        System.out.println("FrontendBackendEndToEndTest seed " + SEED + " (-Dvring.seed=" + SEED + " to repeat)");
    }

    @BeforeEach
    void setUp() throws IOException {
        dir = Files.createTempDirectory("vring-e2e");
        warmUp();
        fdsBefore = openFds();
        fdNamesBefore = fdNames();
    }

    /** "fd -> target" for every open fd, to name a leak. */
    private static java.util.Set<String> fdNames() throws IOException {
        java.util.Set<String> names = new java.util.TreeSet<>();
        try (Stream<Path> fds = Files.list(Path.of("/proc/self/fd"))) {
            for (Path fd : fds.toList()) {
                try {
                    names.add(fd.getFileName() + " -> " + Files.readSymbolicLink(fd));
                } catch (IOException gone) {
                    // the directory's own fd, closed by now
                }
            }
        }
        return names;
    }

    @AfterEach
    void noFdLeft() throws Exception {
        // The server notices the front-end's close on its own thread: give its teardown a moment.
        long deadline = System.nanoTime() + 5_000_000_000L;
        long now = openFds();
        while (now > fdsBefore && System.nanoTime() < deadline) {
            Thread.sleep(20);
            now = openFds();
        }
        try (Stream<Path> files = Files.list(dir)) {
            for (Path p : files.toList()) {
                Files.deleteIfExists(p);
            }
        }
        Files.deleteIfExists(dir);
        java.util.Set<String> added = fdNames();
        added.removeAll(fdNamesBefore);
        for (String a : added) {
            int at = a.indexOf("socket:[");
            if (at >= 0) {
                String inode = a.substring(at + 8, a.length() - 1);
                for (String line : Files.readAllLines(Path.of("/proc/net/unix"))) {
                    if (line.contains(" " + inode + " ") || line.endsWith(" " + inode)) {
                        System.out.println("LEAK " + a + ": " + line);
                    }
                }
            }
        }
        // At most as many: an fd of an earlier test class may finish closing during this one.
        assertTrue(now <= fdsBefore, "open fds before " + fdsBefore + ", after " + now + "; new: " + added);
    }

    /** One full round first, so lazily opened JDK and junixsocket fds are not counted as leaks. */
    private static boolean warmedUp;

    private void warmUp() {
        if (warmedUp) {
            return;
        }
        warmedUp = true;
        Path socket = dir.resolve("warm.sock");
        try (BackendServer server = BackendServer.listen(socket, new EchoBackend());
             FrontendDevice device = FrontendDevice.start(BackendClient.connect(socket), FrontendConfig.of(1, 16))) {
            new EchoTraffic(device.ring(0), device.ring(0).data(), device.ring(0).dataGpa(), 1).run(10);
            device.stop();
            device.saveState();
        }
    }

    private static long openFds() throws IOException {
        try (Stream<Path> fds = Files.list(Path.of("/proc/self/fd"))) {
            return fds.count();
        }
    }

    private static long served(FrontendDevice device) {
        return ByteBuffer.wrap(device.backend().getConfig(0, 8)).order(ByteOrder.LITTLE_ENDIAN).getLong(0);
    }

    @ParameterizedTest(name = "{0} rings, busy-poll {1}")
    @CsvSource({"SPLIT, false", "SPLIT, true", "PACKED, false", "PACKED, true"})
    void dataFlowsThroughBothRingsAndTheBaseSaysHowFar(RingKind kind, boolean busyPoll) {
        assertTimeoutPreemptively(LIMIT, () -> {
            Path socket = dir.resolve("echo.sock");
            EchoBackend echo = new EchoBackend();
            FrontendConfig config = FrontendConfig.of(2, 64).withBusyPoll(busyPoll);
            if (kind == RingKind.PACKED) {
                config = config.packed();
            }
            try (BackendServer server = BackendServer.listen(socket, echo);
                 FrontendDevice device = FrontendDevice.start(BackendClient.connect(socket), config)) {
                assertEquals(kind, device.ringKind());
                Thread other = Thread.ofPlatform().start(() ->
                        new EchoTraffic(device.ring(1), device.ring(1).data(), device.ring(1).dataGpa(), SEED + 1).run(3_000));
                new EchoTraffic(device.ring(0), device.ring(0).data(), device.ring(0).dataGpa(), SEED).run(3_000);
                other.join();
                assertEquals(6_000, served(device));
                int[] bases = device.stop();
                if (kind == RingKind.SPLIT) {
                    assertEquals(3_000, bases[0], "split base: the next avail index");
                    assertEquals(3_000, bases[1]);
                } else {
                    // 3000 two-descriptor chains in a ring of 64: slot (6000 mod 64) and the wrap counter
                    // flips every 64 descriptors, 93 times (odd): wrap 0, for both halves.
                    int position = 6_000 % 64;
                    int expected = position | position << 16;
                    assertEquals(expected, bases[0], "packed base 0x" + Integer.toHexString(bases[0]));
                    assertEquals(expected, bases[1]);
                }
            }
        });
    }

    @ParameterizedTest(name = "memory slots {0}")
    @CsvSource({"true", "false"})
    void regionsComeAndGoWhileAnotherRingCarriesTraffic(boolean slots) {
        assertTimeoutPreemptively(LIMIT, () -> {
            Path socket = dir.resolve("echo.sock");
            long protocol = FrontendConfig.DEFAULT_PROTOCOL_FEATURES;
            if (!slots) {
                protocol &= ~ProtocolFeatures.bit(ProtocolFeatures.CONFIGURE_MEM_SLOTS);
            }
            FrontendConfig config = FrontendConfig.of(2, 64).withProtocolFeatures(protocol);
            try (BackendServer server = BackendServer.listen(socket, new EchoBackend());
                 FrontendDevice device = FrontendDevice.start(BackendClient.connect(socket), config)) {
                assertEquals(slots, device.backend().has(ProtocolFeatures.CONFIGURE_MEM_SLOTS));
                AtomicReference<Throwable> failure = new AtomicReference<>();
                var keepGoing = new java.util.concurrent.atomic.AtomicBoolean(true);
                int[] rounds = new int[1];
                Thread steady = Thread.ofPlatform().start(() -> {
                    try {
                        EchoTraffic t = new EchoTraffic(device.ring(0), device.ring(0).data(), device.ring(0).dataGpa(), SEED);
                        while (keepGoing.get()) {
                            t.run(50);
                            rounds[0]++;
                        }
                    } catch (Throwable e) {
                        failure.set(e);
                    }
                });
                for (int i = 0; i < 6; i++) {
                    long gpa = (1L << 30) + i * (4L << 20);
                    FrontendRegion region = device.addRegion(gpa, 1 << 20);
                    new EchoTraffic(device.ring(1), region.segment(), gpa, SEED + i).run(300);
                    device.removeRegion(region);
                    assertEquals(1, device.regions().size());
                }
                keepGoing.set(false);
                steady.join();
                assertNull(failure.get(), () -> "steady traffic failed: " + failure.get());
                assertTrue(rounds[0] > 0);
                assertEquals(6 * 300 + 50L * rounds[0], served(device));
            }
        });
    }

    @Test
    void aSavedStateResumesInAFreshBackendAndTrafficCarriesOn() {
        assertTimeoutPreemptively(LIMIT, () -> {
            Path first = dir.resolve("first.sock");
            Path second = dir.resolve("second.sock");
            EchoBackend one = new EchoBackend();
            EchoBackend two = new EchoBackend();
            try (BackendServer a = BackendServer.listen(first, one);
                 BackendServer b = BackendServer.listen(second, two);
                 FrontendDevice device = FrontendDevice.start(BackendClient.connect(first), FrontendConfig.of(2, 32))) {
                EchoTraffic ring0 = new EchoTraffic(device.ring(0), device.ring(0).data(), device.ring(0).dataGpa(), SEED);
                ring0.run(500);
                byte[] state = device.saveState();
                assertEquals(500, one.served.get());
                assertEquals(500, device.ring(0).base());

                device.resume(BackendClient.connect(second), state);
                assertEquals(500, two.served.get(), "the fresh back-end loaded the count");
                ring0.run(700); // the same driver queue, continuing at avail index 500
                new EchoTraffic(device.ring(1), device.ring(1).data(), device.ring(1).dataGpa(), SEED + 1).run(100);
                assertEquals(1_300, served(device));
                assertEquals(500, one.served.get(), "the first back-end saw nothing after the save");
            }
        });
    }

    @Test
    void afterABackendDiesAFreshOneReExecutesWhatItLeftAndTrafficCarriesOn() {
        assertTimeoutPreemptively(LIMIT, () -> {
            Path socket = dir.resolve("echo.sock");
            EchoBackend dying = new EchoBackend();
            EchoBackend fresh = new EchoBackend();
            BackendServer first = BackendServer.listen(socket, dying);
            try (FrontendDevice device = FrontendDevice.start(BackendClient.connect(socket), FrontendConfig.of(1, 32))) {
                FrontendRing ring = device.ring(0);
                EchoTraffic traffic = new EchoTraffic(ring, ring.data(), ring.dataGpa(), SEED);
                traffic.run(200);
                // Ten chains the dying back-end takes no further: they are in flight when it goes.
                dying.hold = true;
                long stuckGpa = ring.dataGpa() + 32 * EchoTraffic.SLOT; // past the slots the traffic uses
                for (int i = 0; i < 10; i++) {
                    ring.data().set(java.lang.foreign.ValueLayout.JAVA_BYTE, 32L * EchoTraffic.SLOT + i * 2L, (byte) i);
                    ring.queue().addReadable(stuckGpa + i * 2L, 1);
                    ring.queue().addWritable(stuckGpa + 1024 + i, 1);
                    ring.queue().submit();
                }
                ring.publish();
                first.close();
                assertThrows(VhostUserException.class, () -> device.backend().getStatus());

                try (BackendServer second = BackendServer.listen(socket, fresh)) {
                    device.reconnect(BackendClient.connect(socket));
                    assertEquals(200, ring.base(), "resumed at the used index the dead back-end published");
                    int done = 0;
                    while (done < 10 && ring.awaitUsed(5_000)) {
                        while (ring.queue().pollUsed() >= 0) {
                            assertEquals(1, ring.queue().usedLength());
                            done++;
                        }
                    }
                    assertEquals(10, done, "the fresh back-end executed the chains the dead one left");
                    for (int i = 0; i < 10; i++) {
                        assertEquals((byte) (i + 1), ring.data().get(java.lang.foreign.ValueLayout.JAVA_BYTE,
                                32L * EchoTraffic.SLOT + 1024 + i));
                    }
                    traffic.run(300);
                    assertEquals(310, fresh.served.get());
                    assertEquals(200, dying.served.get());
                }
            } finally {
                first.close();
            }
        });
    }

    @Test
    void aBackendThatConnectsToUsIsDrivenTheSameWay() {
        assertTimeoutPreemptively(LIMIT, () -> {
            Path socket = dir.resolve("frontend.sock");
            try (BackendServer server = BackendServer.connect(socket, new EchoBackend(),
                    new BackendServer.Options("echo-client", false));
                 FrontendDevice device = FrontendDevice.start(
                         BackendClient.accept(socket, Duration.ofSeconds(10), Duration.ofSeconds(5)), FrontendConfig.of(1, 32))) {
                new EchoTraffic(device.ring(0), device.ring(0).data(), device.ring(0).dataGpa(), SEED).run(500);
                assertEquals(500, served(device));
                device.stop();
                device.close();
                server.close(); // before the next attempt to connect to a socket that is gone
            }
        });
    }

    @Test
    void statusConfigAndResetAreAnsweredAndARefusalIsReported() {
        assertTimeoutPreemptively(LIMIT, () -> {
            Path socket = dir.resolve("echo.sock");
            try (BackendServer server = BackendServer.listen(socket, new EchoBackend());
                 FrontendDevice device = FrontendDevice.start(BackendClient.connect(socket), FrontendConfig.of(1, 16))) {
                BackendClient backend = device.backend();
                assertEquals(0xF, backend.getStatus());
                assertArrayEquals(new byte[8], backend.getConfig(0, 8));
                // The echo device's config space is read-only: the refusal comes back as an ack failure.
                VhostUserException refused = assertThrows(VhostUserException.class,
                        () -> backend.setConfig(0, new byte[] {1}, DeviceConfig.FLAG_FRONTEND));
                assertEquals(VhostUserError.BackendInternalError, refused.kind());
                // Out of the config space: GET_CONFIG's error reply (size 0).
                assertEquals(VhostUserError.BackendInternalError,
                        assertThrows(VhostUserException.class, () -> backend.getConfig(4, 8)).kind());
                backend.resetDevice();
                assertEquals(0, backend.getStatus());
            }
        });
    }

    @Test
    void aConfigChangeFromTheBackendReachesOurListenerOverTheBackendChannel() {
        assertTimeoutPreemptively(LIMIT, () -> {
            Path socket = dir.resolve("echo.sock");
            java.util.concurrent.atomic.AtomicInteger changes = new java.util.concurrent.atomic.AtomicInteger();
            FrontendConfig config = FrontendConfig.of(1, 16).withBackendEvents(new FrontendServer.Listener() {
                @Override
                public void configChanged() {
                    changes.incrementAndGet();
                }
            });
            try (BackendServer server = BackendServer.listen(socket, new EchoBackend());
                 FrontendDevice device = FrontendDevice.start(BackendClient.connect(socket), config)) {
                assertTrue(device.backend().has(ProtocolFeatures.BACKEND_REQ));
                assertTrue(server.notifyConfigChanged(), "the server has a back-end channel to us");
                assertEquals(1, changes.get(), "acked (REPLY_ACK), so already handled");
                assertTrue(server.notifyConfigChanged());
                assertEquals(2, changes.get());
            }
        });
    }

    @Test
    void aBackendThatGoesAwayMidSessionIsAnErrorNotAHang() {
        assertTimeoutPreemptively(LIMIT, () -> {
            Path socket = dir.resolve("echo.sock");
            BackendServer server = BackendServer.listen(socket, new EchoBackend());
            try (FrontendDevice device = FrontendDevice.start(BackendClient.connect(socket), FrontendConfig.of(1, 16))) {
                new EchoTraffic(device.ring(0), device.ring(0).data(), device.ring(0).dataGpa(), SEED).run(20);
                server.close();
                VhostUserException e = assertThrows(VhostUserException.class, device::stop);
                assertTrue(e.kind() == VhostUserError.Disconnect || e.kind() == VhostUserError.SocketBroken,
                        e.kind() + ": " + e.getMessage());
                assertTrue(device.backend().isBroken());
            } finally {
                server.close();
            }
        });
    }
}
