package io.vring.backends.vsock;

import java.io.ByteArrayOutputStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * One guest stream socket as Linux's virtio transport keeps it: its receive window (buf_alloc,
 * fwd_cnt), the device's window it may send into, and what arrived. It checks the device's side of
 * the credit contract on every RW packet: never more than the window the guest last advertised.
 */
final class GuestSocket {
    final GuestStack stack;
    final int guestPort;
    final int hostPort;
    int bufAlloc;
    int fwdCnt;
    int lastSentFwdCnt;
    long receivedTotal;
    int peerBufAlloc;
    int peerFwdCnt;
    int txCnt;
    /** Consume (and credit) every RW at once, as an application that reads eagerly; off to hold credit. */
    boolean autoConsume = true;
    boolean established;
    boolean reset;
    int peerShutdown;
    int creditRequests;
    int creditUpdates;
    final ByteArrayOutputStream received = new ByteArrayOutputStream();
    final List<Packet> log = new ArrayList<>();

    GuestSocket(GuestStack stack, int guestPort, int hostPort, int bufAlloc) {
        this.stack = stack;
        this.guestPort = guestPort;
        this.hostPort = hostPort;
        this.bufAlloc = bufAlloc;
    }

    void onPacket(Packet packet) {
        log.add(packet);
        if (packet.op() != Packet.RST) {
            peerBufAlloc = packet.bufAlloc();
            peerFwdCnt = packet.fwdCnt();
        }
        switch (packet.op()) {
            case Packet.RESPONSE -> established = true;
            case Packet.RST -> reset = true;
            case Packet.RW -> receive(packet.payload());
            case Packet.SHUTDOWN -> peerShutdown |= packet.flags();
            case Packet.CREDIT_REQUEST -> {
                creditRequests++;
                sendCredit();
            }
            case Packet.CREDIT_UPDATE -> creditUpdates++;
            case Packet.REQUEST -> { }
            default -> stack.violations.add("unexpected " + packet);
        }
    }

    private void receive(byte[] payload) {
        if (receivedTotal + payload.length - Integer.toUnsignedLong(lastSentFwdCnt) > Integer.toUnsignedLong(bufAlloc)) {
            stack.violations.add("device sent " + payload.length + " bytes past the guest's credit: received "
                    + receivedTotal + ", last fwd_cnt sent " + lastSentFwdCnt + ", buf_alloc " + bufAlloc);
        }
        receivedTotal += payload.length;
        received.writeBytes(payload);
        if (autoConsume) {
            consume(payload.length);
        }
    }

    /** The application read {@code n} bytes: they count in fwd_cnt; the device hears once half the window is back. */
    void consume(int n) {
        fwdCnt += n;
        if (Integer.toUnsignedLong(fwdCnt - lastSentFwdCnt) >= Math.max(1, bufAlloc / 2)) {
            sendCredit();
        }
    }

    void sendCredit() {
        send(Packet.CREDIT_UPDATE, 0, new byte[0]);
    }

    long peerFree() {
        return Math.max(0, Integer.toUnsignedLong(peerBufAlloc) - Integer.toUnsignedLong(txCnt - peerFwdCnt));
    }

    void send(int op, int flags, byte[] payload) {
        stack.driver.send(guestPort, hostPort, op, flags, bufAlloc, fwdCnt, payload, stack.split());
        lastSentFwdCnt = fwdCnt;
    }

    /** Sends {@code data} in RW packets of at most {@code maxChunk} bytes, within the device's credit. */
    void write(byte[] data, int maxChunk) {
        int offset = 0;
        long end = System.nanoTime() + Duration.ofSeconds(20).toNanos();
        while (offset < data.length) {
            stack.pump();
            long free = peerFree();
            if (free == 0 || reset) {
                if (reset) {
                    throw new AssertionError("connection reset while writing: " + log);
                }
                if (System.nanoTime() > end) {
                    throw new AssertionError("the device gave no credit for 20 s; " + offset + " of " + data.length + " sent");
                }
                java.util.concurrent.locks.LockSupport.parkNanos(20_000);
                continue;
            }
            int chunk = (int) Math.min(Math.min(free, maxChunk), data.length - offset);
            byte[] piece = java.util.Arrays.copyOfRange(data, offset, offset + chunk);
            send(Packet.RW, 0, piece);
            txCnt += chunk;
            offset += chunk;
        }
    }

    /** Sends as much as the credit allows now, without waiting; returns the bytes sent. */
    int writeSome(byte[] data, int offset, int maxChunk) {
        long free = peerFree();
        int chunk = (int) Math.min(Math.min(free, maxChunk), data.length - offset);
        if (chunk <= 0) {
            return 0;
        }
        send(Packet.RW, 0, java.util.Arrays.copyOfRange(data, offset, offset + chunk));
        txCnt += chunk;
        return chunk;
    }

    byte[] receivedBytes() {
        return received.toByteArray();
    }

    Packet last() {
        return log.isEmpty() ? null : log.getLast();
    }
}
