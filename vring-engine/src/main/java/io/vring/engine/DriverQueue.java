package io.vring.engine;

import io.vring.engine.notify.Notifier;

/**
 * The driver side of one virtqueue (split or packed): offers buffers to a device and collects them
 * when used. A product feature (a JVM as a virtio front-end), and what drives every back-end in tests.
 *
 * <pre>{@code
 * queue.addReadable(requestGpa, requestLen);   // device reads
 * queue.addWritable(replyGpa, replyLen);       // device writes
 * int id = queue.submit();                     // -1 if the ring has no room
 * queue.publish();                             // one release per batch
 * if (queue.needsKick()) kick.signal();
 * ...
 * int done = queue.pollUsed();                 // -1 when nothing is used
 * int len = queue.usedLength();
 * }</pre>
 *
 * <p>Single-threaded. What the device writes is untrusted: a used id that is not outstanding or a
 * used length over the buffer's writable bytes marks the queue broken, and every later call throws
 * {@link QueueBrokenException}.
 */
public interface DriverQueue {

    /** Queue size. */
    int size();

    /** Descriptors (split) or ring slots (packed) free for new chains. */
    int freeDescriptors();

    /** Adds a device-readable buffer to the chain being built. */
    void addReadable(long gpa, int length);

    /** Adds a device-writable buffer to the chain being built; writable buffers follow readable ones. */
    void addWritable(long gpa, int length);

    /**
     * Makes the chain being built available (visible after {@link #publish()}) and returns its id,
     * or -1 (chain dropped) if the ring lacks room for it.
     */
    int submit();

    /**
     * Like {@link #submit()} but places the chain's buffers in an indirect table, so the chain takes
     * one ring slot. Needs INDIRECT_DESC and an indirect area given at construction.
     */
    int submitIndirect();

    /** Publishes every chain submitted since the last publish. Release. */
    void publish();

    /** Whether the device wants a kick for what was published since the last check (full fence inside). */
    boolean needsKick();

    /** The id of the next used chain, or -1 if none. Acquire. */
    int pollUsed();

    /** Used length the device reported for the chain {@link #pollUsed()} returned last. */
    int usedLength();

    /** Asks the device to signal when it uses buffers. Returns true if a used chain is already there (fence + re-check). */
    boolean enableUsedNotification();

    /** Asks the device not to signal (the driver polls). */
    void disableUsedNotification();

    /** Chains submitted and not yet collected. */
    int outstanding();

    /**
     * Where the driver reads its next used entry: split the used index it has collected up to,
     * packed slot | wrap << 15. A front-end whose back-end died without inflight tracking resumes the
     * ring from the used side (QEMU, reference §6.2); packed needs this, since its ring holds no index.
     */
    int usedPosition();

    /** The queue's broken state, shared by every queue kind. */
    QueueHealth health();

    /** True once the device broke the ring's rules; every data call then throws. */
    default boolean isBroken() {
        return health().isBroken();
    }

    /** Why the queue is broken, or null. */
    default String brokenReason() {
        return health().reason();
    }

    /** Where to signal when the queue breaks. */
    default void errorNotifier(Notifier notifier) {
        health().errorNotifier(notifier);
    }

    long features();
}
