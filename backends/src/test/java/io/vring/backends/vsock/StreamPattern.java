package io.vring.backends.vsock;

/**
 * The byte streams of VsockGuestTest, the same as the guest program's ({@code vsock_guest.c}):
 * at offset o, byte o%8 (little-endian) of splitmix64's finaliser applied to
 * {@code streamSeed + (o/8 + 1) * golden gamma}. Every connection and direction has its own stream,
 * so bytes delivered to the wrong connection, out of order, twice or not at all are all caught.
 */
final class StreamPattern {
    static final int GUEST_TO_HOST = 0, HOST_TO_GUEST = 1;
    private static final long GOLDEN = 0x9E3779B97F4A7C15L;

    private StreamPattern() {
    }

    static long mix(long z) {
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    /** The seed of one connection's stream in one direction. */
    static long streamSeed(long seed, int port, int index, int direction) {
        return mix(seed ^ (Integer.toUnsignedLong(port) << 32) ^ (Integer.toUnsignedLong(index) << 1) ^ direction);
    }

    /** Writes the stream's bytes {@code [offset, offset + length)} into {@code out} from {@code at}. */
    static void fill(long streamSeed, long offset, byte[] out, int at, int length) {
        int i = 0;
        while (i < length) {
            long position = offset + i;
            long word = mix(streamSeed + (position / 8 + 1) * GOLDEN);
            for (int b = (int) (position % 8); b < 8 && i < length; b++, i++) {
                out[at + i] = (byte) (word >>> (8 * b));
            }
        }
    }
}
