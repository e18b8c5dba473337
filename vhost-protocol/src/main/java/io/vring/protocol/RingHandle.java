package io.vring.protocol;

/** A device's handle on one started ring. */
public interface RingHandle {
    /** The ring's index on the connection. */
    int queueIndex();

    /**
     * Makes the ring's worker call {@code process} soon, also if it is asleep waiting for a kick. Safe
     * from any thread; does not allocate.
     */
    void wakeUp();
}
