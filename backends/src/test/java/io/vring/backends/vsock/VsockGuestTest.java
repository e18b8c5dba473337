package io.vring.backends.vsock;

import io.vring.backends.guest.GuestKit;
import io.vring.backends.guest.Initramfs;
import io.vring.backends.guest.QemuGuest;
import io.vring.engine.RingKind;
import io.vring.protocol.BackendServer;
import io.vring.protocol.ServerStats;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.TreeSet;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The vsock device serving a real Linux guest through QEMU 7.2's vhost-user-vsock-pci, with host
 * programs on its hybrid side. In one boot the guest
 * <ol>
 *   <li>reads its CID (IOCTL_VM_SOCKETS_GET_LOCAL_CID), which QEMU took from the device's config space;</li>
 *   <li>connects to a host port nobody listens on, which must fail at once with a reset, not after
 *       the guest's 2 s connect timeout;</li>
 *   <li>opens a SOCK_SEQPACKET connection to {@code <uds-path>_5007}, where a host program echoes every
 *       record, and sends {@value #SEQ_MESSAGES} messages of seeded sizes up to 64 KiB (the device's
 *       buf_alloc) with MSG_EOR: each comes back as one message of its length and bytes with MSG_EOR;
 *       then a SEQPACKET connect to the stream listener on port 5000 must be refused at once;</li>
 *   <li>opens {@value #CONNS} connections in parallel to a host listener on {@code <uds-path>_5000}
 *       and sends {@value #BYTES_PER_CONN} bytes on each, shuts its sending half, and reads the
 *       host's reply, sent only after the host saw EOF;</li>
 *   <li>listens on port 6000 for {@value #CONNS} host connections (CONNECT through {@code <uds-path>}),
 *       receives {@value #BYTES_PER_CONN} bytes on each, and replies after the host's half-close;</li>
 *   <li>does both at once: {@value #BOTH_CONNS} connections each way in parallel, with replies as long
 *       as the streams;</li>
 *   <li>opens {@value #MANY_CONNS} short connections at once each way;</li>
 *   <li>keeps one idle connection to the host open and one host connection sending into it, and
 *       resets the device by unbinding and rebinding its driver: the guest's reader sees its socket
 *       reset; the guest reads its CID again and does a smaller round both ways. The two host
 *       connections must have ended by then, with the guest still running: QEMU 7.2 sends no reset,
 *       and the device ends them when the tx ring restarts where a fresh driver starts;</li>
 *   <li>closes a connection the host floods after a megabyte, and floods one the host closes after a
 *       megabyte: the flooding side must see the close within seconds (EPIPE or ECONNRESET in the guest).</li>
 * </ol>
 * The host also connects to a guest port nobody listens on, which must be closed without an OK.
 * Every byte either way belongs to a seeded stream per connection and direction ({@link StreamPattern})
 * and is checked by its receiver. QEMU must not complain, and no queue may break.
 */
class VsockGuestTest {
    private static final Duration GUEST_STEP = Duration.ofSeconds(60);
    private static final long GUEST_CID = 42;
    private static final int CONNS = 4;
    /** 16 MiB each way in all, over the parallel connections. */
    private static final int BYTES_PER_CONN = 4 << 20;
    private static final int REPLY = 64 << 10;
    private static final int AFTER_RESET_CONNS = 2;
    private static final int AFTER_RESET_BYTES = 1 << 20;
    private static final int REFUSED_PORT = 4999, HOST_PORT = 5000, GUEST_PORT = 6000;
    private static final int HOST_PORT_AFTER_RESET = 5001, GUEST_PORT_AFTER_RESET = 6001;
    private static final int HOST_PORT_BOTH = 5002, GUEST_PORT_BOTH = 6002, BOTH_CONNS = 8, BOTH_BYTES = 1 << 20;
    /** Many short connections at once each way: the connection table, port pairs and rx fairness. */
    private static final int HOST_PORT_MANY = 5006, GUEST_PORT_MANY = 6006, MANY_CONNS = 64, MANY_BYTES = 16 << 10;
    private static final int HOST_PORT_HELD = 5003, CLOSED_GUEST_PORT = 7000;
    /** SEQPACKET: a host program that echoes records, and how many messages the guest sends it. */
    private static final int HOST_PORT_SEQPACKET = 5007, SEQ_MESSAGES = 200;
    /** The guest's last step: it waits for one empty host connection here, so it runs as long as the test needs. */
    private static final int GUEST_PORT_RELEASE = 6003;
    /** The host closes a connection the guest floods, and the guest closes one the host floods. */
    /** A host connection still sending into the guest when the driver is unbound, after this much arrived. */
    private static final int GUEST_PORT_SINK = 6005, SINK_BYTES_BEFORE_RESET = 1 << 20;
    private static final int HOST_PORT_CLOSES = 5004, GUEST_PORT_CLOSES = 6004, BYTES_BEFORE_CLOSE = 1 << 20;
    /** How soon the flooding side must see the close: Linux waits for ever on a connection nobody resets. */
    private static final Duration CLOSE_SEEN_WITHIN = Duration.ofSeconds(5);
    /**
     * How long after the rebind's round of traffic the host connections of the unbound driver may
     * still be open. QEMU 7.2 sends no RESET_DEVICE or SET_STATUS 0 on an unbind: the device sees the
     * rings stop and restart, and ends the old connections when the tx ring restarts where a fresh
     * driver starts.
     */
    private static final Duration HELD_CONNECTION_ENDS_WITHIN = Duration.ofSeconds(3);
    /** The guest gives up on an unanswered REQUEST after 2 s; a reset must come well before that. */
    private static final long REFUSED_WITHIN_MILLIS = 1000;
    private static final int ECONNRESET = 104, ECONNREFUSED = 111;

    static Stream<Arguments> guests() {
        return Stream.of(
                Arguments.of(RingKind.SPLIT, 256),
                Arguments.of(RingKind.PACKED, 256),
                Arguments.of(RingKind.SPLIT, 3072));
    }

    @ParameterizedTest(name = "{0} ring, {1} MiB of guest RAM")
    @MethodSource("guests")
    void guestTrafficBothWaysIsDeliveredExactlyAcrossADeviceReset(RingKind kind, int memoryMiB, @TempDir Path dir)
            throws Exception {
        GuestKit kit = GuestKit.require();
        long seed = new SplittableRandom().nextLong();
        String name = "vsock-" + kind.name().toLowerCase() + "-" + memoryMiB + "m";
        System.out.println("VsockGuestTest " + name + ": seed " + seed);
        Path initramfs = new Initramfs(kit)
                .modules("virtio_pci", "vmw_vsock_virtio_transport")
                .program("/io/vring/backends/vsock/vsock_guest.c")
                .script(script(seed))
                .writeTo(dir.resolve("initramfs.cpio.gz"));
        Path socket = dir.resolve("vhost.sock");
        Path uds = dir.resolve("vsock.uds");
        VsockConfig config = VsockConfig.of(GUEST_CID, socket, uds);

        ServerStats serverStats;
        VsockStats.Snapshot deviceStats;
        long heldEndedAfterUnbind;
        VsockStats.Snapshot beforeCloses;
        VsockStats.Snapshot beforeSink;
        long[] seqEchoed;
        try (VsockDevice device = VsockDevice.open(config);
             BackendServer server = BackendServer.listen(socket, device);
             HybridHosts hosts = new HybridHosts(seed)) {
            serverStats = server.stats();
            List<Future<HybridHosts.Outcome>> fromGuest = hosts.acceptFromGuest(config.listenerPath(HOST_PORT), HOST_PORT,
                    CONNS, BYTES_PER_CONN, REPLY);
            List<Future<HybridHosts.Outcome>> fromGuestAfterReset = hosts.acceptFromGuest(
                    config.listenerPath(HOST_PORT_AFTER_RESET), HOST_PORT_AFTER_RESET, AFTER_RESET_CONNS, AFTER_RESET_BYTES, REPLY);
            List<Future<HybridHosts.Outcome>> fromGuestBoth = hosts.acceptFromGuest(config.listenerPath(HOST_PORT_BOTH),
                    HOST_PORT_BOTH, BOTH_CONNS, BOTH_BYTES, BOTH_BYTES);
            List<Future<HybridHosts.Outcome>> fromGuestMany = hosts.acceptFromGuest(config.listenerPath(HOST_PORT_MANY),
                    HOST_PORT_MANY, MANY_CONNS, MANY_BYTES, MANY_BYTES);
            Future<long[]> seqEcho = hosts.echoSeqpacket(config.listenerPath(HOST_PORT_SEQPACKET));
            Future<Long> heldEnds = hosts.acceptHeldConnection(config.listenerPath(HOST_PORT_HELD));
            Future<Long> hostClosed = hosts.acceptAndCloseEarly(config.listenerPath(HOST_PORT_CLOSES), HOST_PORT_CLOSES,
                    BYTES_BEFORE_CLOSE);
            long bootStart = System.nanoTime();
            try (QemuGuest guest = QemuGuest.builder(kit, initramfs, name).memoryMiB(memoryMiB)
                    .vhostUser("vhost-user-vsock-pci", socket, kind == RingKind.PACKED ? "packed=on" : "packed=off")
                    .start()) {
                assertEquals(String.valueOf(GUEST_CID), guest.awaitLine(Pattern.compile("^CID (\\d+)$"), GUEST_STEP).group(1),
                        "the guest's CID is the device's config space");
                long ready = System.nanoTime();

                Matcher refused = guest.awaitLine(Pattern.compile("^REFUSED(-CONNECTED)?(?: (\\d+) (\\S+) (\\d+))?$"), GUEST_STEP);
                assertEquals(null, refused.group(1), "a connect to a host port nobody listens on must fail");
                int errno = Integer.parseInt(refused.group(2));
                assertTrue(errno == ECONNRESET || errno == ECONNREFUSED,
                        "refused with " + refused.group(3) + ", not a reset (ETIMEDOUT means the device never answered)");
                assertTrue(Long.parseLong(refused.group(4)) < REFUSED_WITHIN_MILLIS,
                        "refused after " + refused.group(4) + " ms: the reset must come at once");

                String seqBytes = guest.awaitLine(Pattern.compile("^SEQPACKET-BYTES " + HOST_PORT_SEQPACKET + " (\\d+)$"),
                        GUEST_STEP).group(1);
                assertGuestDone(guest, "SEQPACKET", HOST_PORT_SEQPACKET);
                seqEchoed = seqEcho.get(GUEST_STEP.toSeconds(), TimeUnit.SECONDS);
                assertEquals(SEQ_MESSAGES, seqEchoed[0], "every guest message was one host record");
                assertEquals(seqBytes, String.valueOf(seqEchoed[1]), "the host echoed every byte the guest sent");

                long g2hStart = System.nanoTime();
                assertGuestDone(guest, "CONNECT", HOST_PORT);
                List<HybridHosts.Outcome> g2h = HybridHosts.await(fromGuest, GUEST_STEP);
                long g2hMillis = millisSince(g2hStart);
                assertEquals(indices(CONNS), g2h.stream().map(HybridHosts.Outcome::index).collect(Collectors.toCollection(TreeSet::new)),
                        "every guest connection reached the host listener once");

                Matcher seqRefused = guest.awaitLine(Pattern.compile("^SEQREFUSED(-CONNECTED)?(?: (\\d+) (\\S+) (\\d+))?$"),
                        GUEST_STEP);
                assertEquals(null, seqRefused.group(1), "a SEQPACKET connect to a stream listener must fail");
                assertEquals(ECONNRESET, Integer.parseInt(seqRefused.group(2)), "refused with " + seqRefused.group(3));
                assertTrue(Long.parseLong(seqRefused.group(4)) < REFUSED_WITHIN_MILLIS,
                        "SEQPACKET refused after " + seqRefused.group(4) + " ms: the reset must come at once");

                guest.awaitLine(Pattern.compile("^LISTENING " + GUEST_PORT + "$"), GUEST_STEP);
                assertEquals("", hosts.connectToClosedGuestPort(uds, CLOSED_GUEST_PORT).get(GUEST_STEP.toSeconds(), TimeUnit.SECONDS),
                        "CONNECT to a guest port nobody listens on is closed without an OK");
                long h2gStart = System.nanoTime();
                List<HybridHosts.Outcome> h2g = HybridHosts.await(
                        hosts.connectToGuest(uds, GUEST_PORT, CONNS, BYTES_PER_CONN, REPLY), GUEST_STEP);
                assertGuestDone(guest, "SERVE", GUEST_PORT);
                long h2gMillis = millisSince(h2gStart);
                assertOkPortsAreThePeersTheGuestSaw(guest, GUEST_PORT, h2g);

                guest.awaitLine(Pattern.compile("^LISTENING " + GUEST_PORT_BOTH + "$"), GUEST_STEP);
                List<Future<HybridHosts.Outcome>> toGuestBoth = hosts.connectToGuest(uds, GUEST_PORT_BOTH, BOTH_CONNS, BOTH_BYTES, BOTH_BYTES);
                Matcher both = guest.awaitLine(Pattern.compile("^BOTH-DONE (\\d+) (\\d+)$"), GUEST_STEP);
                assertEquals(List.of(), guest.console().stream().filter(line -> line.startsWith("FAIL ")).toList(),
                        "the guest program's complaints");
                assertEquals("0 0", both.group(1) + " " + both.group(2), "guest connect and serve at once");
                HybridHosts.await(fromGuestBoth, GUEST_STEP);
                assertOkPortsAreThePeersTheGuestSaw(guest, GUEST_PORT_BOTH, HybridHosts.await(toGuestBoth, GUEST_STEP));

                assertGuestDone(guest, "CONNECT", HOST_PORT_MANY);
                assertEquals(indices(MANY_CONNS), HybridHosts.await(fromGuestMany, GUEST_STEP).stream()
                        .map(HybridHosts.Outcome::index).collect(Collectors.toCollection(TreeSet::new)), "every one of many connections once");
                guest.awaitLine(Pattern.compile("^LISTENING " + GUEST_PORT_MANY + "$"), GUEST_STEP);
                List<HybridHosts.Outcome> many = HybridHosts.await(
                        hosts.connectToGuest(uds, GUEST_PORT_MANY, MANY_CONNS, MANY_BYTES, MANY_BYTES), GUEST_STEP);
                assertGuestDone(guest, "SERVE", GUEST_PORT_MANY);
                assertOkPortsAreThePeersTheGuestSaw(guest, GUEST_PORT_MANY, many);

                guest.awaitLine(Pattern.compile("^HOLDING " + HOST_PORT_HELD + "$"), GUEST_STEP);
                guest.awaitLine(Pattern.compile("^LISTENING " + GUEST_PORT_SINK + "$"), GUEST_STEP);
                // Every connection so far has ended (but the held one, idle): host-to-guest bytes are exact here.
                beforeSink = device.stats();
                Future<String> floodAcrossReset = hosts.connectAndSendUntilClosed(uds, GUEST_PORT_SINK);
                guest.awaitLine(Pattern.compile("^UNBOUND$"), GUEST_STEP);
                long unbound = System.nanoTime();
                guest.awaitLine(Pattern.compile("^REBOUND$"), GUEST_STEP);
                assertEquals(String.valueOf(GUEST_CID), guest.awaitLine(Pattern.compile("^CID (\\d+)$"), GUEST_STEP).group(1),
                        "the CID after the reset");
                assertGuestDone(guest, "CONNECT", HOST_PORT_AFTER_RESET);
                HybridHosts.await(fromGuestAfterReset, GUEST_STEP);
                guest.awaitLine(Pattern.compile("^LISTENING " + GUEST_PORT_AFTER_RESET + "$"), GUEST_STEP);
                List<HybridHosts.Outcome> afterReset = HybridHosts.await(
                        hosts.connectToGuest(uds, GUEST_PORT_AFTER_RESET, AFTER_RESET_CONNS, AFTER_RESET_BYTES, REPLY), GUEST_STEP);
                assertGuestDone(guest, "SERVE", GUEST_PORT_AFTER_RESET);
                assertOkPortsAreThePeersTheGuestSaw(guest, GUEST_PORT_AFTER_RESET, afterReset);
                // Every connection so far has ended on both sides: the byte counters are exact here.
                guest.awaitLine(Pattern.compile("^LISTENING " + GUEST_PORT_CLOSES + "$"), GUEST_STEP);
                beforeCloses = device.stats();
                Future<String> hostFlood = hosts.connectAndSendUntilClosed(uds, GUEST_PORT_CLOSES);
                guest.awaitLine(Pattern.compile("^DROPPED " + GUEST_PORT_CLOSES + " after " + BYTES_BEFORE_CLOSE + "$"), GUEST_STEP);
                long guestClosed = System.nanoTime();
                String floodEnded = hostFlood.get(CLOSE_SEEN_WITHIN.toSeconds(), TimeUnit.SECONDS);
                System.out.println("VsockGuestTest " + name + ": the guest closed, the host's writes ended within "
                        + millisSince(guestClosed) + " ms: " + floodEnded);
                Matcher guestFlood = guest.awaitLine(Pattern.compile("^FLOOD-ENDED (\\S+) after (\\d+) in (\\d+) ms$"), GUEST_STEP);
                long guestSawClose = System.nanoTime();
                long hostClosedAt = hostClosed.get(0, TimeUnit.SECONDS);
                assertTrue(guestSawClose - hostClosedAt < CLOSE_SEEN_WITHIN.toNanos(), "the guest's writes ended "
                        + millis(hostClosedAt, guestSawClose) + " ms after the host closed");
                assertTrue(Set.of("EPIPE", "ECONNRESET").contains(guestFlood.group(1)),
                        "the guest's write to a connection the host closed fails with " + guestFlood.group(1));
                assertTrue(Long.parseLong(guestFlood.group(2)) >= BYTES_BEFORE_CLOSE, guestFlood.group());

                // The guest waits on port 6003 until the host lets it finish: QEMU stays connected meanwhile.
                guest.awaitLine(Pattern.compile("^LISTENING " + GUEST_PORT_RELEASE + "$"), GUEST_STEP);
                // The rebind restarted the rings where a fresh driver starts: the device ended the old driver's
                // connections then, while the guest runs, not only when QEMU goes away.
                try {
                    heldEndedAfterUnbind = millis(unbound, heldEnds.get(HELD_CONNECTION_ENDS_WITHIN.toNanos(), TimeUnit.NANOSECONDS));
                } catch (TimeoutException stillOpen) {
                    throw new AssertionError("a host connection the guest had when its driver was unbound is still open "
                            + millisSince(unbound) + " ms after the unbind, after the rebind and a round of traffic: " + device.stats());
                }
                String floodAcrossResetEnded;
                try {
                    floodAcrossResetEnded = floodAcrossReset.get(HELD_CONNECTION_ENDS_WITHIN.toSeconds(), TimeUnit.SECONDS);
                } catch (TimeoutException e) {
                    throw new AssertionError("the host still writes to a connection of the unbound driver "
                            + millisSince(unbound) + " ms after the unbind, after the rebind: " + device.stats());
                }
                List<String> sinkEnded = guest.console().stream().filter(line -> line.startsWith("SINK-ENDED ")).toList();
                HybridHosts.await(hosts.connectToGuest(uds, GUEST_PORT_RELEASE, 1, 0, 0), GUEST_STEP);
                assertGuestDone(guest, "SERVE", GUEST_PORT_RELEASE);

                assertEquals(0, guest.awaitPowerOff(GUEST_STEP), "the guest's script succeeded");
                guest.close();
                System.out.println("VsockGuestTest " + name + ": the guest's reader of a host flood across the driver reset: "
                        + sinkEnded + "; the host's flood ended: " + floodAcrossResetEnded
                        + "; the connection held across the driver reset ended " + heldEndedAfterUnbind + " ms after the unbind");
                assertEquals(1, sinkEnded.size(), "the guest's socket ends at the reset: " + sinkEnded);
                assertEquals(List.of(), guest.qemuMessages(), "QEMU has nothing to complain about");
                deviceStats = device.stats();
                System.out.printf("VsockGuestTest %s: boot to CID %d ms; guest->host %d MiB over %d connections in %d ms"
                                + " (%.1f MiB/s); host->guest %d MiB in %d ms (%.1f MiB/s); whole run %d ms; %s; %s%n",
                        name, millis(bootStart, ready), (long) CONNS * BYTES_PER_CONN >> 20, CONNS, g2hMillis,
                        mibPerSecond(g2hMillis), (long) CONNS * BYTES_PER_CONN >> 20, h2gMillis, mibPerSecond(h2gMillis),
                        millisSince(bootStart), deviceStats, serverStats);
            }
        }
        long streams = (long) CONNS * BYTES_PER_CONN + (long) AFTER_RESET_CONNS * AFTER_RESET_BYTES
                + (long) (CONNS + AFTER_RESET_CONNS) * REPLY + 2L * BOTH_CONNS * BOTH_BYTES + 2L * MANY_CONNS * MANY_BYTES;
        // Plus the 4-byte index that opens each connection (the held one sends only that).
        long indices = 4L * (CONNS + AFTER_RESET_CONNS + BOTH_CONNS + MANY_CONNS);
        assertEquals(streams + indices + 4 + seqEchoed[1], beforeCloses.bytesGuestToHost(), beforeCloses.toString());
        long afterReset = (long) AFTER_RESET_CONNS * AFTER_RESET_BYTES + (long) AFTER_RESET_CONNS * REPLY + 4L * AFTER_RESET_CONNS;
        assertEquals(streams + indices - afterReset + seqEchoed[1], beforeSink.bytesHostToGuest(), beforeSink.toString());
        assertEquals(SEQ_MESSAGES, deviceStats.messagesGuestToHost(), deviceStats.toString());
        assertEquals(SEQ_MESSAGES, deviceStats.messagesHostToGuest(), deviceStats.toString());
        assertEquals(0, deviceStats.malformed(), deviceStats.toString());
        assertEquals(0, deviceStats.dropped(), deviceStats.toString());
        assertEquals(2, deviceStats.refused(), "the REQUEST to a host port nobody listens on, the SEQPACKET one to"
                + " a stream listener: " + deviceStats);
        assertEquals(CONNS + AFTER_RESET_CONNS + BOTH_CONNS + MANY_CONNS + 3, deviceStats.guestConnections(),
                "the guest's connections, the held, the flooding and the SEQPACKET one included: " + deviceStats);
        assertEquals(CONNS + AFTER_RESET_CONNS + BOTH_CONNS + MANY_CONNS + 4, deviceStats.hostConnections(),
                "the host's CONNECTs, to a closed guest port, the two flooding ones and the release included: " + deviceStats);
        assertEquals(0, deviceStats.open(), "nothing left open: " + deviceStats);
        assertEquals(0, serverStats.brokenQueues(), serverStats.toString());
        assertEquals(0, serverStats.ringStarts(kind == RingKind.PACKED ? RingKind.SPLIT : RingKind.PACKED), serverStats.toString());
        assertEquals(4, serverStats.ringStarts(kind), "rx and tx started once per driver binding, as " + kind + ": " + serverStats);
    }

    private static String script(long seed) {
        String s = Long.toUnsignedString(seed);
        return """
                vsock_guest cid || exit 1
                vsock_guest refused %2$d || exit 1
                vsock_guest seqpacket %27$d %28$d %1$s || exit 1
                vsock_guest connect %3$d %5$d %6$d %7$d %1$s || exit 1
                vsock_guest seqrefused %3$d || exit 1
                vsock_guest serve %4$d %5$d %6$d %7$d %1$s || exit 1
                vsock_guest serve %13$d %14$d %15$d %15$d %1$s & serving=$!
                vsock_guest connect %12$d %14$d %15$d %15$d %1$s; connected=$?
                wait $serving; served=$?
                echo "BOTH-DONE $connected $served"
                [ $connected = 0 ] && [ $served = 0 ] || exit 1
                vsock_guest connect %23$d %25$d %26$d %26$d %1$s || exit 1
                vsock_guest serve %24$d %25$d %26$d %26$d %1$s || exit 1
                vsock_guest hold %16$d || exit 1
                vsock_guest sink %21$d %22$d %1$s || exit 1
                driver=/sys/bus/virtio/drivers/vmw_vsock_virtio_transport
                device=$(basename "$(readlink -f $driver/virtio*)")
                echo "$device" > $driver/unbind || exit 1
                echo UNBOUND
                echo "$device" > $driver/bind || exit 1
                echo REBOUND
                vsock_guest cid || exit 1
                vsock_guest connect %8$d %10$d %11$d %7$d %1$s || exit 1
                vsock_guest serve %9$d %10$d %11$d %7$d %1$s || exit 1
                vsock_guest drop %19$d %20$d %1$s || exit 1
                vsock_guest flood %18$d %1$s || exit 1
                vsock_guest serve %17$d 1 0 0 %1$s || exit 1
                """.formatted(s, REFUSED_PORT, HOST_PORT, GUEST_PORT, CONNS, BYTES_PER_CONN, REPLY,
                HOST_PORT_AFTER_RESET, GUEST_PORT_AFTER_RESET, AFTER_RESET_CONNS, AFTER_RESET_BYTES,
                HOST_PORT_BOTH, GUEST_PORT_BOTH, BOTH_CONNS, BOTH_BYTES, HOST_PORT_HELD, GUEST_PORT_RELEASE,
                HOST_PORT_CLOSES, GUEST_PORT_CLOSES, BYTES_BEFORE_CLOSE, GUEST_PORT_SINK, SINK_BYTES_BEFORE_RESET,
                HOST_PORT_MANY, GUEST_PORT_MANY, MANY_CONNS, MANY_BYTES, HOST_PORT_SEQPACKET, SEQ_MESSAGES);
    }

    /** Waits for the guest program's summary line; on failure shows the guest's FAIL lines. */
    private static void assertGuestDone(QemuGuest guest, String what, int port) throws InterruptedException {
        Matcher done = guest.awaitLine(Pattern.compile("^" + what + "-DONE " + port + " failures=(\\d+) in (\\d+) ms$"), GUEST_STEP);
        List<String> failures = guest.console().stream().filter(line -> line.startsWith("FAIL ")).toList();
        assertEquals("0", done.group(1), "guest " + what + " on port " + port + ": " + failures);
        assertEquals(List.of(), failures, "the guest program's complaints");
        System.out.println("VsockGuestTest: guest " + what + " " + port + " took " + done.group(2) + " ms (guest clock)");
    }

    /** The port in each {@code OK <port>} is the host-side port the guest's accept() reported. */
    private static void assertOkPortsAreThePeersTheGuestSaw(QemuGuest guest, int port, List<HybridHosts.Outcome> outcomes) {
        Pattern served = Pattern.compile("^SERVED " + port + " (\\d+) peer=(\\d+):(\\d+) ");
        Set<String> seen = new TreeSet<>();
        for (String line : guest.console()) {
            Matcher m = served.matcher(line);
            if (m.find()) {
                assertEquals("2", m.group(2), "a host connection comes from CID 2: " + line);
                seen.add(m.group(1) + ":" + m.group(3));
            }
        }
        Set<String> told = outcomes.stream().map(o -> o.index() + ":" + o.okPort()).collect(Collectors.toCollection(TreeSet::new));
        assertEquals(told, seen, "index:port pairs the host was told (OK) and the guest accepted");
    }

    private static Set<Integer> indices(int n) {
        return Stream.iterate(0, i -> i + 1).limit(n).collect(Collectors.toCollection(TreeSet::new));
    }

    private static long millisSince(long start) {
        return millis(start, System.nanoTime());
    }

    private static long millis(long from, long to) {
        return (to - from) / 1_000_000;
    }

    private static double mibPerSecond(long millis) {
        return (double) ((long) CONNS * BYTES_PER_CONN >> 20) * 1000 / Math.max(1, millis);
    }
}
