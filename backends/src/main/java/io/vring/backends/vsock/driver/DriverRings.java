package io.vring.backends.vsock.driver;

import io.vring.engine.DriverQueue;

import java.lang.foreign.MemorySegment;

/**
 * The transport under a {@link VsockDriver}: the driver side of the rx and tx queues, the guest
 * memory each may place buffers in, and how to tell the device. {@link VsockDriver#connect} makes
 * one from a vhost-user front-end; a test can make one over device queues on its own memory.
 */
public interface DriverRings {
    /** Queue indices of virtio-vsock (§5.10.2): rx 0, tx 1 (the event queue 2 is not used). */
    int RX = 0, TX = 1;

    /** The driver queue {@link #RX} or {@link #TX}. */
    DriverQueue queue(int index);

    /** Memory for that queue's buffers: {@link #dataBytes} bytes at guest address {@link #dataGpa}. */
    MemorySegment data(int index);

    long dataGpa(int index);

    /** Publishes what was submitted on the queue and notifies the device if it asked. */
    void publish(int index);

    /**
     * Waits up to {@code timeoutNanos} for a used buffer on the queue (or returns early). The driver
     * re-checks everything after it, so a wait may end without one.
     */
    void awaitUsed(int index, long timeoutNanos);

    /** The virtio features negotiated with the device. */
    long features();

    /** Entries per indirect table, 0 if indirect descriptors are not to be used. */
    int maxIndirect();
}
