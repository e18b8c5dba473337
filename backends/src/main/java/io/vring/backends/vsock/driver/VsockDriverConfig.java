package io.vring.backends.vsock.driver;

import java.time.Duration;

/**
 * How a {@link VsockDriver} sets itself up.
 *
 * @param queueSize         entries of the rx and tx rings
 * @param rxBufferSize      bytes of each receive buffer, header included (Linux posts 4 KiB; larger
 *                          buffers carry more payload per packet, up to 64 KiB)
 * @param streamBufferSize  receive window of each new stream (buf_alloc), Linux's default 256 KiB
 * @param packed            ask for packed rings (used if the back-end offers them)
 * @param guestCid          our CID, or -1 to read it from the back-end's config space (GET_CONFIG)
 * @param connectTimeout    how long {@link VsockDriver#connect} waits for RESPONSE or RST
 * @param ioTimeout         how long a blocking read, write or accept waits without progress
 * @param closeTimeout      how long {@link VsockStream#close()} waits for the peer's RST before sending one
 */
public record VsockDriverConfig(int queueSize, int rxBufferSize, int streamBufferSize, boolean packed, long guestCid,
                                Duration connectTimeout, Duration ioTimeout, Duration closeTimeout) {
    public static final int DEFAULT_QUEUE_SIZE = 128;
    public static final int DEFAULT_RX_BUFFER_SIZE = 4096;
    public static final int DEFAULT_STREAM_BUFFER_SIZE = 256 * 1024;

    public VsockDriverConfig {
        if (queueSize < 2 || Integer.bitCount(queueSize) != 1 || queueSize > 32768) {
            throw new IllegalArgumentException("queue size " + queueSize + ", expected a power of two in 2..32768");
        }
        if (rxBufferSize <= VsockPacket.HEADER || rxBufferSize > VsockPacket.HEADER + PacketRings.MAX_PAYLOAD) {
            throw new IllegalArgumentException("rx buffer size " + rxBufferSize + ", expected " + (VsockPacket.HEADER + 1)
                    + ".." + (VsockPacket.HEADER + PacketRings.MAX_PAYLOAD));
        }
        if (streamBufferSize < 0) {
            throw new IllegalArgumentException("negative stream buffer size " + streamBufferSize);
        }
    }

    /** Split rings of 128, 4 KiB rx buffers, 256 KiB stream windows, the CID from the back-end. */
    public static VsockDriverConfig defaults() {
        return new VsockDriverConfig(DEFAULT_QUEUE_SIZE, DEFAULT_RX_BUFFER_SIZE, DEFAULT_STREAM_BUFFER_SIZE, false, -1,
                Duration.ofSeconds(5), Duration.ofSeconds(30), Duration.ofSeconds(2));
    }

    public VsockDriverConfig withQueueSize(int queueSize) {
        return new VsockDriverConfig(queueSize, rxBufferSize, streamBufferSize, packed, guestCid, connectTimeout,
                ioTimeout, closeTimeout);
    }

    public VsockDriverConfig withRxBufferSize(int rxBufferSize) {
        return new VsockDriverConfig(queueSize, rxBufferSize, streamBufferSize, packed, guestCid, connectTimeout,
                ioTimeout, closeTimeout);
    }

    public VsockDriverConfig withStreamBufferSize(int streamBufferSize) {
        return new VsockDriverConfig(queueSize, rxBufferSize, streamBufferSize, packed, guestCid, connectTimeout,
                ioTimeout, closeTimeout);
    }

    public VsockDriverConfig withPacked(boolean packed) {
        return new VsockDriverConfig(queueSize, rxBufferSize, streamBufferSize, packed, guestCid, connectTimeout,
                ioTimeout, closeTimeout);
    }

    public VsockDriverConfig withGuestCid(long guestCid) {
        return new VsockDriverConfig(queueSize, rxBufferSize, streamBufferSize, packed, guestCid, connectTimeout,
                ioTimeout, closeTimeout);
    }

    public VsockDriverConfig withTimeouts(Duration connectTimeout, Duration ioTimeout, Duration closeTimeout) {
        return new VsockDriverConfig(queueSize, rxBufferSize, streamBufferSize, packed, guestCid, connectTimeout,
                ioTimeout, closeTimeout);
    }
}
