package io.vring.engine.inflight;

/**
 * Test seam: told around every store an inflight queue makes to its region, so a crash test can copy
 * the region at each instant a SIGKILL could land, or stop the back-end there (the engine's crash
 * tests in-process; {@code vring crash-test}'s back-end process through {@link InflightBuffer#withProbe}).
 * Production queues have none (a null check on a final field per store).
 */
public interface StoreProbe {
    /** One store to the region has just been made. */
    void stored();

    /**
     * A store to the region is about to be made (called from every store accessor). Throwing here
     * stops the back-end right before that store: with {@link #stored()} this reaches the instants
     * between a device's own ring store and the next region store, which {@code stored()} alone
     * cannot.
     */
    default void storing() {
    }
}
