package io.vring.engine.inflight;

/**
 * Test seam: told after every store an inflight queue makes to its region, so a crash test can copy
 * the region at each instant a SIGKILL could land. Production queues have none (a null check on a
 * final field per store).
 */
interface StoreProbe {
    /** One store to the region has just been made. */
    void stored();
}
