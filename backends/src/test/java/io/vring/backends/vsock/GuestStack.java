package io.vring.backends.vsock;

import io.vring.backends.vsock.driver.VsockException;
import io.vring.backends.vsock.driver.VsockListener;
import io.vring.backends.vsock.driver.VsockPacket;
import io.vring.backends.vsock.driver.VsockStream;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.locks.LockSupport;
import java.util.function.BooleanSupplier;

/**
 * The test's view of the guest over a {@link GuestDriver}: the product driver's streams wrapped as
 * {@link GuestSocket}s (with the log of every packet each one got), the streams the driver accepted
 * on listening ports, every packet that matched no stream, and what the device did wrong (bad
 * addressing or type, RW past a window, an op out of place). Single-threaded (the test thread).
 */
final class GuestStack {
    final GuestDriver driver;
    final Map<Long, GuestSocket> sockets = new HashMap<>();
    final List<VsockListener> listeners = new ArrayList<>();
    final List<GuestSocket> accepted = new ArrayList<>();
    final List<VsockPacket> unmatched = new ArrayList<>();
    final List<String> violations = new ArrayList<>();
    int acceptBufAlloc = 256 * 1024;
    private long overrunsSeen;
    private long violationsSeen;
    private GuestDriver.Split split = GuestDriver.Split.HEADER_APART;

    GuestStack(GuestDriver driver) {
        this.driver = driver;
        driver.vsock.packets().txLayout(driver.layout(split));
    }

    GuestDriver.Split split() {
        return split;
    }

    /** Every packet the driver sends from now on is cut as {@code split} says. */
    void split(GuestDriver.Split split) {
        this.split = split;
        driver.vsock.packets().txLayout(driver.layout(split));
    }

    private static long key(int guestPort, int hostPort) {
        return ((long) guestPort << 32) | Integer.toUnsignedLong(hostPort);
    }

    /** The driver accepts the host's connections to guest port {@code port}. */
    void listen(int port) {
        listeners.add(driver.vsock.listen(port, acceptBufAlloc));
    }

    /** Opens a stream to host port {@code hostPort} (REQUEST sent, not waited for). */
    GuestSocket connect(int hostPort, int bufAlloc) {
        try {
            return track(driver.vsock.open(hostPort, bufAlloc), false);
        } catch (VsockException e) {
            throw new AssertionError(e.getMessage(), e);
        }
    }

    /** Connects and waits for the device's answer (RESPONSE or RST). */
    GuestSocket connectAndWait(int hostPort, int bufAlloc) {
        GuestSocket socket = connect(hostPort, bufAlloc);
        await(() -> socket.established() || socket.reset(), "an answer to REQUEST for port " + hostPort);
        return socket;
    }

    private GuestSocket track(VsockStream stream, boolean wasAccepted) {
        GuestSocket socket = new GuestSocket(this, stream, wasAccepted);
        sockets.put(key(socket.guestPort, socket.hostPort), socket);
        return socket;
    }

    /** One round of the driver: packets logged and checked, accepted streams collected, eager readers fed. */
    void pump() {
        for (VsockPacket packet : driver.poll()) {
            if (packet.srcCid() != VsockHeader.HOST_CID || packet.dstCid() != GuestDriver.GUEST_CID
                    || packet.type() != VsockPacket.STREAM) {
                violations.add("bad addressing or type: " + packet);
            }
            GuestSocket socket = sockets.get(key(packet.dstPort(), packet.srcPort()));
            if (socket != null) {
                socket.log.add(packet);
            }
        }
        unmatched.addAll(driver.unclaimed);
        driver.unclaimed.clear();
        for (VsockListener listener : listeners) {
            for (VsockStream stream; (stream = listener.pollAccept()) != null; ) {
                accepted.add(track(stream, true));
            }
        }
        if (driver.vsock.creditOverruns() != overrunsSeen) {
            overrunsSeen = driver.vsock.creditOverruns();
            violations.add("the device sent RW past a stream's window (" + overrunsSeen + " so far)");
        }
        if (driver.vsock.protocolViolations() != violationsSeen) {
            violationsSeen = driver.vsock.protocolViolations();
            violations.add("the device sent an op out of place (" + violationsSeen + " so far)");
        }
        for (GuestSocket socket : sockets.values()) {
            if (socket.autoConsume) {
                socket.drain();
            }
        }
    }

    /** Pumps until {@code condition} holds, for at most 10 s. */
    void await(BooleanSupplier condition, String what) {
        long end = System.nanoTime() + Duration.ofSeconds(10).toNanos();
        while (true) {
            pump();
            if (condition.getAsBoolean()) {
                return;
            }
            if (System.nanoTime() > end) {
                throw new AssertionError("timed out waiting for " + what + "; unmatched " + unmatched);
            }
            LockSupport.parkNanos(20_000);
        }
    }

    /** Pumps for {@code window}: lets anything the device would still send arrive. */
    void settle(Duration window) {
        long end = System.nanoTime() + window.toNanos();
        while (System.nanoTime() < end) {
            pump();
            LockSupport.parkNanos(50_000);
        }
    }
}
