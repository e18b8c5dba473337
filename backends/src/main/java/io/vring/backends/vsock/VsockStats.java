package io.vring.backends.vsock;

/**
 * Per-VM counters. {@code strays} are packets for connections that no longer (or never) existed,
 * answered with RST; {@code malformed} ones broke the protocol; {@code dropped} ones were not for us;
 * {@code siblingPackets} went to another VM's guest ({@link Siblings}); {@code messages*} count
 * SEQPACKET messages, a guest message being one host record and the other way round.
 * Updated under the connection table's lock, read with {@link #snapshot()}.
 */
public final class VsockStats {
    long guestConnections;
    long hostConnections;
    long refused;
    long resetsSent;
    long bytesGuestToHost;
    long bytesHostToGuest;
    long creditStalls;
    long malformed;
    long strays;
    long dropped;
    long siblingPackets;
    long messagesGuestToHost;
    long messagesHostToGuest;

    /** Counters at one instant, plus the number of open connections. */
    public record Snapshot(long guestConnections, long hostConnections, int open, long refused, long resetsSent,
                           long bytesGuestToHost, long bytesHostToGuest, long creditStalls, long malformed,
                           long strays, long dropped, long siblingPackets, long messagesGuestToHost,
                           long messagesHostToGuest) {
        /** One line, {@code key=value} pairs. */
        @Override
        public String toString() {
            return "connections guest=" + guestConnections + " host=" + hostConnections + " open=" + open
                    + " refused=" + refused + " rst-sent=" + resetsSent
                    + " bytes guest->host=" + bytesGuestToHost + " host->guest=" + bytesHostToGuest
                    + " credit-stalls=" + creditStalls + " malformed=" + malformed + " strays=" + strays + " dropped=" + dropped
                    + " sibling-packets=" + siblingPackets + " messages guest->host=" + messagesGuestToHost
                    + " host->guest=" + messagesHostToGuest;
        }
    }

    Snapshot snapshot(int open) {
        return new Snapshot(guestConnections, hostConnections, open, refused, resetsSent, bytesGuestToHost,
                bytesHostToGuest, creditStalls, malformed, strays, dropped, siblingPackets,
                messagesGuestToHost, messagesHostToGuest);
    }
}
