package io.vring.backends.rng;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.security.SecureRandom;

/** Where the rng device's bytes come from. Called on the ring's worker thread only. */
public interface EntropySource extends AutoCloseable {

    /** Fills {@code dst[0, length)}. Must not allocate. */
    void fill(byte[] dst, int length);

    @Override
    default void close() {
    }

    /** The JDK's {@link SecureRandom} (the default source). */
    static EntropySource secureRandom() {
        SecureRandom random = new SecureRandom();
        byte[] chunk = new byte[RngBackend.MAX_BYTES_PER_CHAIN];
        return (dst, length) -> {
            if (length == dst.length) {
                random.nextBytes(dst);
            } else {
                random.nextBytes(chunk);
                System.arraycopy(chunk, 0, dst, 0, length);
            }
        };
    }

    /**
     * Bytes read from {@code path} in order, starting over at its end (like vhost-device-rng's
     * {@code --rng-source}): a character device such as {@code /dev/urandom}, or a file of known
     * bytes for a test that checks where the guest's bytes came from.
     */
    static EntropySource file(Path path) {
        RandomAccessFile file;
        try {
            file = new RandomAccessFile(path.toFile(), "r");
        } catch (IOException e) {
            throw new UncheckedIOException("cannot open entropy source " + path, e);
        }
        return new EntropySource() {
            @Override
            public void fill(byte[] dst, int length) {
                try {
                    int done = 0;
                    boolean rewound = false;
                    while (done < length) {
                        int n = file.read(dst, done, length - done);
                        if (n > 0) {
                            done += n;
                            rewound = false;
                        } else if (rewound) {
                            throw new IOException("empty");
                        } else {
                            file.seek(0);
                            rewound = true;
                        }
                    }
                } catch (IOException e) {
                    throw new UncheckedIOException("reading entropy source " + path + " failed: " + e.getMessage(), e);
                }
            }

            @Override
            public void close() {
                try {
                    file.close();
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
            }
        };
    }
}
