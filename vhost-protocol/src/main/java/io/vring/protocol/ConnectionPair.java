package io.vring.protocol;

/** Two connected ends of an anonymous socket pair; closing the pair closes both. */
public record ConnectionPair(Connection first, Connection second) implements AutoCloseable {
    @Override
    public void close() {
        try {
            first.close();
        } finally {
            second.close();
        }
    }
}
