package io.vring.backends.vsock;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.locks.LockSupport;
import java.util.function.BooleanSupplier;

/**
 * The guest's vsock layer over a {@link GuestDriver}: sockets by (guest port, host port), listening
 * ports that accept the host's REQUESTs, and every packet that matched no socket. Single-threaded
 * (the test thread).
 */
final class GuestStack {
    final GuestDriver driver;
    final Map<Long, GuestSocket> sockets = new HashMap<>();
    final Set<Integer> listening = new HashSet<>();
    final List<GuestSocket> accepted = new ArrayList<>();
    final List<Packet> unmatched = new ArrayList<>();
    final List<String> violations = new ArrayList<>();
    int acceptBufAlloc = 256 * 1024;
    private int nextPort = 40000;
    private GuestDriver.Split split = GuestDriver.Split.HEADER_APART;

    GuestStack(GuestDriver driver) {
        this.driver = driver;
    }

    GuestDriver.Split split() {
        return split;
    }

    void split(GuestDriver.Split split) {
        this.split = split;
    }

    private static long key(int guestPort, int hostPort) {
        return ((long) guestPort << 32) | Integer.toUnsignedLong(hostPort);
    }

    /** Sends a REQUEST to host port {@code hostPort} from a fresh guest port. */
    GuestSocket connect(int hostPort, int bufAlloc) {
        GuestSocket socket = new GuestSocket(this, nextPort++, hostPort, bufAlloc);
        sockets.put(key(socket.guestPort, hostPort), socket);
        socket.send(Packet.REQUEST, 0, new byte[0]);
        return socket;
    }

    /** Connects and waits for the device's answer (RESPONSE or RST). */
    GuestSocket connectAndWait(int hostPort, int bufAlloc) {
        GuestSocket socket = connect(hostPort, bufAlloc);
        await(() -> socket.established || socket.reset, "an answer to REQUEST for port " + hostPort);
        return socket;
    }

    /** Handles every packet the device has written so far. */
    void pump() {
        for (Packet packet; (packet = driver.poll()) != null; ) {
            dispatch(packet);
        }
    }

    private void dispatch(Packet packet) {
        if (packet.srcCid() != VsockHeader.HOST_CID || packet.dstCid() != GuestDriver.GUEST_CID
                || packet.type() != Packet.STREAM) {
            violations.add("bad addressing or type: " + packet);
        }
        GuestSocket socket = sockets.get(key(packet.dstPort(), packet.srcPort()));
        if (socket != null) {
            socket.onPacket(packet);
        } else if (packet.op() == Packet.REQUEST && listening.contains(packet.dstPort())) {
            GuestSocket child = new GuestSocket(this, packet.dstPort(), packet.srcPort(), acceptBufAlloc);
            sockets.put(key(child.guestPort, child.hostPort), child);
            child.onPacket(packet);
            child.established = true;
            child.send(Packet.RESPONSE, 0, new byte[0]);
            accepted.add(child);
        } else {
            unmatched.add(packet);
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
