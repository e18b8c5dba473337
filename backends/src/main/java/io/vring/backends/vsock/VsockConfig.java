package io.vring.backends.vsock;

import java.nio.file.Path;
import java.util.List;

/**
 * One VM's device: the names and defaults of vhost-device-vsock's {@code --vm} keys.
 *
 * @param guestCid     the guest's CID (config space {@code guest_cid}); 3 and up, below 2^32 - 1
 * @param socket       the vhost-user socket the device listens on
 * @param udsPath      the hybrid host socket: hosts connect here, guests reach {@code udsPath_<port>}
 * @param txBufferSize per-connection guest-to-host buffer, also the {@code buf_alloc} the device advertises
 * @param queueSize    the largest queue size the device accepts
 * @param groups       sibling-VM groups: guests of VMs that share one reach each other by CID ({@link Siblings})
 */
public record VsockConfig(long guestCid, Path socket, Path udsPath, int txBufferSize, int queueSize,
                          List<String> groups) {
    public static final long DEFAULT_GUEST_CID = 3;
    public static final int DEFAULT_TX_BUFFER_SIZE = 64 * 1024;
    public static final int DEFAULT_QUEUE_SIZE = 1024;

    public VsockConfig {
        // 0, 1, 2 are the hypervisor, loopback and host; 2^32-1 is VMADDR_CID_ANY; the upper half is reserved.
        if (guestCid < 3 || guestCid >= 0xFFFF_FFFFL) {
            throw new IllegalArgumentException("guest CID " + guestCid + " is reserved or out of range (3 .. 4294967294)");
        }
        if (socket == null || udsPath == null) {
            throw new IllegalArgumentException("a VM needs both socket and uds-path");
        }
        if (txBufferSize <= 0) {
            throw new IllegalArgumentException("tx-buffer-size must be positive, got " + txBufferSize);
        }
        if (queueSize < 1 || queueSize > 32768) {
            throw new IllegalArgumentException("queue-size must be 1 .. 32768, got " + queueSize);
        }
        groups = List.copyOf(groups == null || groups.isEmpty() ? List.of("default") : groups);
    }

    /** A VM with the defaults of everything but the three paths/ids. */
    public static VsockConfig of(long guestCid, Path socket, Path udsPath) {
        return new VsockConfig(guestCid, socket, udsPath, DEFAULT_TX_BUFFER_SIZE, DEFAULT_QUEUE_SIZE, List.of("default"));
    }

    /** {@code <uds-path>_<port>}: where a guest connection to host port {@code port} goes. */
    public Path listenerPath(int port) {
        return Path.of(udsPath + "_" + Integer.toUnsignedString(port));
    }
}
