package io.vring.backends.vsock;

import io.vring.backends.vsock.driver.VsockException;
import io.vring.backends.vsock.driver.VsockPacket;
import io.vring.backends.vsock.driver.VsockStream;

import java.io.ByteArrayOutputStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.locks.LockSupport;

/**
 * A product {@link VsockStream} as a test holds it: the packets it got, the bytes it read (read
 * eagerly after every pump, as an application that keeps up, unless {@link #autoConsume} is off to
 * hold credit), and {@link #send} for packets the stream itself would never send.
 */
final class GuestSocket {
    final GuestStack stack;
    final VsockStream stream;
    final int guestPort;
    final int hostPort;
    private final boolean wasAccepted;
    /** Read (and credit) everything at once after every pump; off to hold credit. */
    boolean autoConsume = true;
    final ByteArrayOutputStream received = new ByteArrayOutputStream();
    final List<VsockPacket> log = new ArrayList<>();
    private final byte[] chunk = new byte[64 * 1024];

    GuestSocket(GuestStack stack, VsockStream stream, boolean wasAccepted) {
        this.stack = stack;
        this.stream = stream;
        this.guestPort = stream.localPort();
        this.hostPort = stream.peerPort();
        this.wasAccepted = wasAccepted;
    }

    /** True once the connection was made (RESPONSE came, or the guest accepted it), even if it ended since. */
    boolean established() {
        return wasAccepted || stream.isEstablished() || log.stream().anyMatch(p -> p.op() == VsockPacket.RESPONSE);
    }

    boolean reset() {
        return stream.isReset();
    }

    long receivedTotal() {
        return stream.bytesReceived();
    }

    int peerShutdown() {
        return stream.peerShutdown();
    }

    int creditRequests() {
        return stream.creditRequestsReceived();
    }

    int creditUpdates() {
        return stream.creditUpdatesReceived();
    }

    int peerBufAlloc() {
        return stream.peerBufAlloc();
    }

    long peerFree() {
        return stream.peerCredit();
    }

    /** Sets the guest's window (the stream tells the device). */
    void bufAlloc(int window) {
        try {
            stream.receiveBufferSize(window);
        } catch (VsockException e) {
            throw new AssertionError(e.getMessage(), e);
        }
    }

    void sendCredit() {
        try {
            stream.sendCreditUpdate();
        } catch (VsockException e) {
            throw new AssertionError(e.getMessage(), e);
        }
    }

    /** Reads what the stream holds into {@link #received}. */
    void drain() {
        try {
            while (stream.available() > 0) {
                int n = stream.readSome(chunk, 0, chunk.length);
                received.write(chunk, 0, n);
            }
        } catch (VsockException e) {
            throw new AssertionError(e.getMessage(), e);
        }
    }

    /** A packet on this connection exactly as given, bypassing the stream's state and credit. */
    void send(int op, int flags, byte[] payload) {
        stack.driver.send(guestPort, hostPort, op, flags, stream.receiveBufferSize(), stream.fwdCnt(), payload,
                stack.split());
    }

    /** Sends {@code data} in RW packets of at most {@code maxChunk} bytes, within the device's credit. */
    void write(byte[] data, int maxChunk) {
        int offset = 0;
        long end = System.nanoTime() + Duration.ofSeconds(20).toNanos();
        while (offset < data.length) {
            stack.pump();
            if (stream.isReset()) {
                throw new AssertionError("connection reset while writing: " + log);
            }
            int n = writeSome(data, offset, maxChunk);
            offset += n;
            if (n == 0) {
                if (System.nanoTime() > end) {
                    throw new AssertionError("the device gave no credit for 20 s; " + offset + " of " + data.length + " sent");
                }
                LockSupport.parkNanos(20_000);
            }
        }
    }

    /** Sends as much as the credit and the tx slots allow now, in packets of at most {@code maxChunk}; returns the bytes sent. */
    int writeSome(byte[] data, int offset, int maxChunk) {
        try {
            int sent = 0;
            while (offset + sent < data.length) {
                int n = stream.writeSome(data, offset + sent, Math.min(maxChunk, data.length - offset - sent));
                if (n == 0) {
                    break;
                }
                sent += n;
            }
            return sent;
        } catch (VsockException e) {
            throw new AssertionError(e.getMessage(), e);
        }
    }

    byte[] receivedBytes() {
        drain();
        return received.toByteArray();
    }

    VsockPacket last() {
        return log.isEmpty() ? null : log.getLast();
    }
}
