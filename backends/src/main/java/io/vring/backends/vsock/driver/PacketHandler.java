package io.vring.backends.vsock.driver;

/**
 * Receives one packet the device wrote to the rx queue. The header and the buffer are the driver's
 * and are reused for the next packet: copy what must outlive the call ({@link VsockPacket#of}).
 */
@FunctionalInterface
public interface PacketHandler {
    void onPacket(PacketHeader header, byte[] buffer, int payloadOffset, int payloadLength);
}
