package io.vring.protocol;

import io.vring.engine.VirtioFeatures;
import io.vring.protocol.message.ProtocolFeatures;

/**
 * What a {@link FrontendDevice} asks of a back-end. Features are wishes: the device negotiates the
 * intersection with what the back-end offers (VERSION_1 must be in it).
 *
 * @param features         virtio feature bits wanted (bit 30 is added by itself when offered)
 * @param protocolFeatures protocol feature bits wanted ({@link ProtocolFeatures} masks)
 * @param queueCount       rings to set up (indices 0..queueCount-1)
 * @param queueSize        size of every ring
 * @param busyPoll         kick and call go with NOFD: the back-end polls the avail ring, we poll the used ring
 * @param dataBytesPerRing bytes of guest memory after each ring for the caller's buffers
 * @param maxIndirect      entries per indirect table (used only if INDIRECT_DESC is negotiated)
 * @param guestBase        GPA of the region that holds the rings (page-aligned)
 * @param backendEvents    where back-end channel requests go (the channel is set up if BACKEND_REQ is negotiated)
 */
public record FrontendConfig(long features, long protocolFeatures, int queueCount, int queueSize, boolean busyPoll,
                             long dataBytesPerRing, int maxIndirect, long guestBase,
                             FrontendServer.Listener backendEvents) {
    /** The protocol features a {@link FrontendDevice} uses when the back-end offers them. */
    public static final long DEFAULT_PROTOCOL_FEATURES = ProtocolFeatures.bit(ProtocolFeatures.MQ)
            | ProtocolFeatures.bit(ProtocolFeatures.REPLY_ACK) | ProtocolFeatures.bit(ProtocolFeatures.BACKEND_REQ)
            | ProtocolFeatures.bit(ProtocolFeatures.CONFIG) | ProtocolFeatures.bit(ProtocolFeatures.CONFIGURE_MEM_SLOTS)
            | ProtocolFeatures.bit(ProtocolFeatures.STATUS) | ProtocolFeatures.bit(ProtocolFeatures.RESET_DEVICE)
            | ProtocolFeatures.bit(ProtocolFeatures.DEVICE_STATE);
    /** Split rings, little-endian, EVENT_IDX and indirect descriptors when offered. */
    public static final long DEFAULT_FEATURES = VirtioFeatures.bit(VirtioFeatures.VERSION_1)
            | VirtioFeatures.bit(VirtioFeatures.EVENT_IDX) | VirtioFeatures.bit(VirtioFeatures.INDIRECT_DESC);

    public FrontendConfig {
        if (queueCount < 1 || queueCount > 256) {
            throw new IllegalArgumentException("queue count " + queueCount + ", expected 1..256");
        }
        if (queueSize < 1 || queueSize > 32768) {
            throw new IllegalArgumentException("queue size " + queueSize + ", expected 1..32768");
        }
        if (dataBytesPerRing < 0 || maxIndirect < 0) {
            throw new IllegalArgumentException("negative data bytes or indirect entries");
        }
        if ((guestBase & 4095) != 0) {
            throw new IllegalArgumentException("guest base 0x" + Long.toHexString(guestBase) + " is not page-aligned");
        }
        if (backendEvents == null) {
            backendEvents = new FrontendServer.Listener() { };
        }
    }

    /** {@code queueCount} split rings of {@code queueSize}, eventfd mode, 64 KiB of data per ring, rings at GPA 1 MiB. */
    public static FrontendConfig of(int queueCount, int queueSize) {
        return new FrontendConfig(DEFAULT_FEATURES, DEFAULT_PROTOCOL_FEATURES, queueCount, queueSize, false, 64 << 10, 16,
                1 << 20, null);
    }

    public FrontendConfig withFeatures(long features) {
        return new FrontendConfig(features, protocolFeatures, queueCount, queueSize, busyPoll, dataBytesPerRing,
                maxIndirect, guestBase, backendEvents);
    }

    /** The same with VIRTIO_F_RING_PACKED wanted too. */
    public FrontendConfig packed() {
        return withFeatures(features | VirtioFeatures.bit(VirtioFeatures.RING_PACKED));
    }

    public FrontendConfig withProtocolFeatures(long protocolFeatures) {
        return new FrontendConfig(features, protocolFeatures, queueCount, queueSize, busyPoll, dataBytesPerRing,
                maxIndirect, guestBase, backendEvents);
    }

    /**
     * The same with INFLIGHT_SHMFD wanted too: the device gets an inflight region from the back-end
     * and hands it back on every start, so a back-end restarted after a crash can resubmit requests.
     */
    public FrontendConfig withInflight() {
        return withProtocolFeatures(protocolFeatures | ProtocolFeatures.bit(ProtocolFeatures.INFLIGHT_SHMFD));
    }

    public FrontendConfig withBusyPoll(boolean busyPoll) {
        return new FrontendConfig(features, protocolFeatures, queueCount, queueSize, busyPoll, dataBytesPerRing,
                maxIndirect, guestBase, backendEvents);
    }

    public FrontendConfig withDataBytesPerRing(long dataBytesPerRing) {
        return new FrontendConfig(features, protocolFeatures, queueCount, queueSize, busyPoll, dataBytesPerRing,
                maxIndirect, guestBase, backendEvents);
    }

    public FrontendConfig withBackendEvents(FrontendServer.Listener backendEvents) {
        return new FrontendConfig(features, protocolFeatures, queueCount, queueSize, busyPoll, dataBytesPerRing,
                maxIndirect, guestBase, backendEvents);
    }
}
