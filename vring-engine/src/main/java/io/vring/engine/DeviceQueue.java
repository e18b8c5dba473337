package io.vring.engine;

import io.vring.engine.chain.DescriptorChain;
import io.vring.engine.inflight.InflightBuffer;
import io.vring.engine.notify.Notifier;

/**
 * The device side of one virtqueue (split or packed): what a back-end codes against.
 *
 * <pre>{@code
 * DescriptorChain chain = queue.poll();   // null when empty or broken; never allocates
 * ... read the readable buffers, write the writable ones ...
 * queue.addUsed(chain, bytesWritten);     // stages the used entry
 * queue.publish();                        // one release store per batch
 * if (queue.needsNotification()) call.signal();
 * }</pre>
 *
 * <p>Single-threaded: one worker thread owns a queue. Everything the driver wrote is untrusted; a
 * structural violation marks the queue broken ({@link #isBroken()}, {@link #brokenReason()}),
 * signals the error notifier, and from then on {@code poll()} returns null and nothing in guest
 * memory is written. No method throws because of what the driver wrote.
 */
public interface DeviceQueue {

    /** Queue size: descriptors in the table (split) or ring (packed). */
    int size();

    /**
     * The next available chain, or null if there is none or the queue is broken. The returned
     * flyweight is valid until the next call. Acquire: the driver's writes to the chain and its
     * buffers before it published the chain are visible.
     */
    DescriptorChain poll();

    /** Stages a used entry for {@code chain} with {@code bytesWritten} bytes written to its writable part. */
    void addUsed(DescriptorChain chain, int bytesWritten);

    /**
     * Stages a used entry for a chain popped earlier, by its {@link DescriptorChain#token()}: for
     * devices that keep several chains in flight and complete them out of order.
     */
    void addUsed(int token, int bytesWritten);

    /**
     * Makes every staged used entry visible to the driver. Release: payload and used entries written
     * before are visible to a driver that sees the new used index (split) or flags (packed).
     */
    void publish();

    /**
     * Whether the driver asked to be told about the used entries published since the last check
     * (flags or EVENT_IDX). Contains the full fence that orders the publish before reading the
     * driver's suppression state; without it a notification is lost and the ring hangs.
     */
    boolean needsNotification();

    /**
     * Asks the driver to kick when it adds buffers (before the worker sleeps). Returns true if
     * buffers are already available, re-read past the cache after a full fence: then the caller
     * must not sleep.
     */
    boolean enableNotification();

    /** Asks the driver not to kick (the worker is polling). A hint: kicks may still arrive. */
    void disableNotification();

    /** True if a chain is available (reads the driver's index or flags, acquire). */
    boolean hasAvailable();

    /** The position the next {@code poll()} reads: split avail index, or packed slot | wrap << 15. */
    int availPosition();

    /**
     * Where the next used entry goes: split used index, or packed slot | wrap << 15. With
     * {@link #availPosition()} it is what a restarted device resumes from.
     */
    int usedPosition();

    /**
     * Starts inflight tracking (vhost-user INFLIGHT_SHMFD) on a queue just created at ring start,
     * before its first {@code poll()}: validates queue {@code queueIndex}'s region of {@code buffer},
     * recovers from it what a previous back-end popped and never completed, positions the queue
     * there, and returns how many chains {@code poll()} will hand out again, in the order they were
     * first popped, before any new one. They are walked and validated like any chain the driver
     * offers; complete them as usual. From then on {@code poll()} records each chain in the region
     * before returning it, and {@code publish()} clears the entries of the chains it publishes, in an
     * order that leaves the region consistent at every instant a SIGKILL can land.
     *
     * <p>Positions: split resumes at used idx + inflight heads, whatever SET_VRING_BASE said; packed
     * takes both positions from the region (QEMU's packed base after a crash is stale). A region
     * never started (version 0: a buffer fresh from GET_INFLIGHT_FD) is laid out at the queue's
     * current position, the queue keeps its base, and 0 is returned. A queue that is already broken
     * (its rings unusable) does not touch the region and returns 0.
     *
     * <p>Without this call the data path is exactly the untracked one. Not for the data path: it
     * allocates.
     *
     * @throws io.vring.engine.inflight.InflightRegionException if the region is refused (too small,
     *         wrong version or queue size, contents no back-end could have written, or disagreeing with
     *         the ring); the queue is then marked broken with the same reason
     * @throws IllegalStateException    if chains were already polled, or tracking is already on
     * @throws IllegalArgumentException if the buffer has the other ring kind's layout
     */
    int trackInflight(InflightBuffer buffer, int queueIndex);

    /** True once {@link #trackInflight} attached a region. */
    boolean isTrackingInflight();

    /**
     * Starts dirty-page logging for a live migration (VHOST_F_LOG_ALL with the SET_LOG_BASE log), or
     * stops it with a null {@code log}. While on, {@code addUsed} marks the pages of the chain's
     * writable part up to {@code bytesWritten} (for {@code addUsed(token, ...)} the queue finds the
     * chain's buffers again itself), and, if {@code usedLogAddress >= 0} (the ring's
     * VHOST_VRING_F_LOG, with its log_guest_addr), every store the queue makes to its device area is
     * marked at {@code usedLogAddress} plus the store's offset in the area. Packed rings also write
     * used descriptors into the descriptor ring: those are marked at their guest-physical address when
     * {@code usedLogAddress >= 0}. Call while the ring's worker is parked (the control plane's
     * hand-over orders it); the data path stays allocation-free.
     */
    void logDirty(io.vring.engine.memory.DirtyLog log, long usedLogAddress);

    /** The dirty log in use, or null. */
    io.vring.engine.memory.DirtyLog dirtyLog();

    /** The queue's broken state, shared by every queue kind. */
    QueueHealth health();

    /** True once the driver broke the ring's rules; the queue then does nothing. */
    default boolean isBroken() {
        return health().isBroken();
    }

    /** Why the queue is broken, or null. */
    default String brokenReason() {
        return health().reason();
    }

    /** Marks the queue broken (first reason wins) and signals the error notifier. */
    default void markBroken(String reason) {
        health().markBroken(reason);
    }

    /**
     * Where to signal when the queue breaks (vhost-user's error eventfd). Default: none. Signals at
     * once if the queue already broke (e.g. in its constructor, on misaligned ring addresses).
     */
    default void errorNotifier(Notifier notifier) {
        health().errorNotifier(notifier);
    }

    /** Negotiated virtio feature bits this queue honours (see {@link VirtioFeatures}). */
    long features();
}
