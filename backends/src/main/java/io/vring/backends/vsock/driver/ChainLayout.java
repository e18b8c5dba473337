package io.vring.backends.vsock.driver;

/**
 * How the driver cuts a packet (tx) or a receive buffer (rx) into the descriptors of one chain. The
 * spec lets a driver split header and payload anywhere (virtio 1.2 §5.10.6.6: the device must not
 * assume a layout), so a driver that can use any split is also a test of the device; a product
 * driver uses {@link #HEADER_APART} on tx (as Linux does) and {@link #WHOLE} on rx.
 */
@FunctionalInterface
public interface ChainLayout {
    /** At most this many descriptors per chain. */
    int MAX_PIECES = 16;

    /** One descriptor for the whole packet or buffer. */
    ChainLayout WHOLE = (length, pieces) -> {
        pieces[0] = length;
        return 1;
    };

    /** The header in one descriptor and the rest in a second (one descriptor if there is no rest). */
    ChainLayout HEADER_APART = (length, pieces) -> {
        if (length <= VsockPacket.HEADER) {
            pieces[0] = length;
            return 1;
        }
        pieces[0] = VsockPacket.HEADER;
        pieces[1] = length - VsockPacket.HEADER;
        return 2;
    };

    /**
     * Cuts {@code length} bytes: writes the lengths of 1 .. {@link #MAX_PIECES} non-empty pieces that add
     * up to {@code length} into {@code pieces} and returns how many.
     */
    int cut(int length, int[] pieces);
}
