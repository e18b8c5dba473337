package io.vring.protocol;

import io.vring.engine.DriverQueue;
import io.vring.engine.RingKind;
import io.vring.engine.RingPlacement;
import io.vring.engine.memory.GuestMemory;
import io.vring.engine.notify.EventFd;
import io.vring.engine.notify.Notifier;

import java.lang.foreign.MemorySegment;

/**
 * Everything a Java front-end uses on one ring: the driver queue, where its data area lies, and its
 * notifiers. In eventfd mode the kick and call are eventfds the back-end got with SET_VRING_KICK /
 * SET_VRING_CALL; in busy-poll mode both went with NOFD, {@link #kick()} does nothing and the driver
 * polls the used ring. The error eventfd exists in both modes.
 *
 * <pre>{@code
 * FrontendRing ring = device.ring(0);
 * ring.data().set(JAVA_BYTE, 0, (byte) 42);            // a request in the ring's data area
 * ring.queue().addReadable(ring.dataGpa(), 1);
 * ring.queue().addWritable(ring.dataGpa() + 4096, 64);
 * ring.queue().submit();
 * ring.publish();                                      // publish, kick if the device asks
 * if (ring.awaitUsed(1_000)) { int id = ring.queue().pollUsed(); ... }
 * }</pre>
 *
 * <p>Single-threaded, like the driver queue.
 */
public final class FrontendRing implements AutoCloseable {
    private final int index;
    private final RingKind kind;
    private final RingPlacement placement;
    private final DriverQueue queue;
    private final MemorySegment data;
    private final EventFd kick;
    private final EventFd call;
    private final EventFd err;
    /** The base to resume at (SET_VRING_BASE): the fresh-ring value until GET_VRING_BASE reports one. */
    private int base;

    private FrontendRing(int index, RingKind kind, RingPlacement placement, DriverQueue queue, MemorySegment data,
                         EventFd kick, EventFd call, EventFd err) {
        this.index = index;
        this.kind = kind;
        this.placement = placement;
        this.queue = queue;
        this.data = data;
        this.kick = kick;
        this.call = call;
        this.err = err;
        this.base = freshBase(kind);
    }

    /** Opens the driver side of ring {@code index} at {@code placement} (it zeroes the ring areas). */
    static FrontendRing open(int index, RingKind kind, int size, RingPlacement placement, GuestMemory memory,
                             long features, boolean busyPoll) {
        DriverQueue queue = kind.driver("ring" + index, memory, size, placement.rings(), features, placement.indirect());
        MemorySegment data = memory.slice(placement.dataGpa(), placement.dataBytes());
        EventFd kick = null;
        EventFd call = null;
        EventFd err = null;
        try {
            err = EventFd.create();
            if (!busyPoll) {
                kick = EventFd.create();
                call = EventFd.create();
            }
            return new FrontendRing(index, kind, placement, queue, data, kick, call, err);
        } catch (RuntimeException e) {
            closeQuietly(kick);
            closeQuietly(call);
            closeQuietly(err);
            throw e;
        }
    }

    /** SET_VRING_BASE of a ring that never ran: split 0; packed both wrap counters 1 ({@code 0x80008000}). */
    public static int freshBase(RingKind kind) {
        return kind == RingKind.PACKED ? 0x8000_8000 : 0;
    }

    public int index() {
        return index;
    }

    public RingKind kind() {
        return kind;
    }

    public DriverQueue queue() {
        return queue;
    }

    /** Where the ring areas, indirect area and data area lie in guest memory. */
    public RingPlacement placement() {
        return placement;
    }

    /** First GPA of the ring's data area, for buffers. */
    public long dataGpa() {
        return placement.dataGpa();
    }

    /** The ring's data area ({@link RingPlacement#dataBytes()} bytes at {@link #dataGpa()}). */
    public MemorySegment data() {
        return data;
    }

    /** True if the ring runs without kick and call eventfds. */
    public boolean busyPoll() {
        return kick == null;
    }

    /** The kick: the eventfd, or {@link Notifier#NONE} in busy-poll mode. */
    public Notifier kick() {
        return kick == null ? Notifier.NONE : kick;
    }

    /** The kick eventfd's fd, or -1 in busy-poll mode (SET_VRING_KICK with NOFD). */
    int kickFd() {
        return kick == null ? -1 : kick.fd();
    }

    /** The call eventfd, or null in busy-poll mode. */
    public EventFd call() {
        return call;
    }

    /** The call eventfd's fd, or -1 in busy-poll mode. */
    int callFd() {
        return call == null ? -1 : call.fd();
    }

    /** The error eventfd the back-end signals when it finds the ring broken. */
    public EventFd err() {
        return err;
    }

    /**
     * Publishes what was submitted and kicks the back-end if it asked for kicks. In busy-poll mode
     * (no kick fd: the back-end polls) the kick check and its full fence are skipped.
     */
    public void publish() {
        queue.publish();
        if (kick != null && queue.needsKick()) {
            kick.signal();
        }
    }

    /**
     * Waits until a used chain is ready to {@link DriverQueue#pollUsed()} or the time passes. In
     * eventfd mode it sleeps on the call eventfd (after asking for a call and re-checking); in
     * busy-poll mode it spins.
     *
     * @return true if a used chain is there
     */
    public boolean awaitUsed(long timeoutMillis) {
        long deadline = System.nanoTime() + timeoutMillis * 1_000_000;
        for (;;) {
            if (queue.enableUsedNotification()) {
                return true;
            }
            long leftMillis = (deadline - System.nanoTime()) / 1_000_000;
            if (leftMillis <= 0) {
                return false;
            }
            if (call == null) {
                Thread.onSpinWait();
            } else {
                call.await(Math.min(leftMillis, 100));
            }
        }
    }

    /** The base this ring resumes at on the next start (updated by {@link FrontendDevice#stop()}). */
    public int base() {
        return base;
    }

    void base(int base) {
        this.base = base;
    }

    /** Closes the eventfds (the ring memory belongs to the device's region). Idempotent. */
    @Override
    public void close() {
        closeQuietly(kick);
        closeQuietly(call);
        closeQuietly(err);
    }

    private static void closeQuietly(EventFd fd) {
        if (fd != null) {
            fd.close();
        }
    }

    @Override
    public String toString() {
        return "FrontendRing[" + index + ", " + kind + ", size " + queue.size() + (busyPoll() ? ", busy-poll]" : "]");
    }
}
