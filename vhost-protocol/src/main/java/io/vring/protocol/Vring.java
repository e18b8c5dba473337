package io.vring.protocol;

import io.vring.engine.DeviceQueue;
import io.vring.engine.notify.EventFd;
import io.vring.protocol.message.VringAddress;

import java.util.ArrayList;
import java.util.List;

/**
 * What the front-end told the back-end about one ring (size, base, addresses, eventfds, enable) and,
 * while it is started, its device queue and worker.
 *
 * <p>Owned by the control thread. The worker reads only {@link #isEnabled()} and the call and error
 * eventfds, which the front-end may swap while the ring runs (QEMU moves the call fd between its
 * masked notifier and the guest's irqfd): they are volatile, and a replaced eventfd is closed only
 * once the ring has stopped, so the worker never signals a closed (and maybe reused) fd number.
 */
final class Vring {
    private final int index;
    private int size;
    /** From SET_VRING_BASE or the last stop: split next avail index; packed avail and used positions. */
    private int availPosition;
    private int usedPosition;
    private VringAddress address;
    /** The kick eventfd; null with the NOFD bit (poll) or before SET_VRING_KICK. */
    private EventFd kick;
    private boolean kickReceived;
    private volatile EventFd call;
    private volatile EventFd err;
    private final List<EventFd> retired = new ArrayList<>();
    private volatile boolean enabled;

    private DeviceQueue queue;
    private RingWorker worker;

    Vring(int index) {
        this.index = index;
    }

    int index() {
        return index;
    }

    int size() {
        return size;
    }

    void size(int size) {
        this.size = size;
    }

    int availPosition() {
        return availPosition;
    }

    int usedPosition() {
        return usedPosition;
    }

    void positions(int avail, int used) {
        this.availPosition = avail;
        this.usedPosition = used;
    }

    VringAddress address() {
        return address;
    }

    void address(VringAddress address) {
        this.address = address;
    }

    EventFd kick() {
        return kick;
    }

    boolean kickReceived() {
        return kickReceived;
    }

    /** Takes {@code fd} (null for NOFD) as the kick eventfd; the old one is closed (the ring is stopped). */
    void kick(EventFd fd) {
        closeQuietly(kick);
        kick = fd;
        kickReceived = true;
    }

    void call(EventFd fd) {
        retire(call);
        call = fd;
    }

    void err(EventFd fd) {
        retire(err);
        err = fd;
    }

    boolean isEnabled() {
        return enabled;
    }

    void enabled(boolean on) {
        enabled = on;
    }

    boolean isStarted() {
        return worker != null;
    }

    DeviceQueue queue() {
        return queue;
    }

    void started(DeviceQueue q, RingWorker w) {
        queue = q;
        worker = w;
    }

    RingWorker worker() {
        return worker;
    }

    /** Forgets the queue and worker once the worker stopped; closes eventfds replaced while it ran. */
    void stopped() {
        queue = null;
        worker = null;
        for (EventFd fd : retired) {
            closeQuietly(fd);
        }
        retired.clear();
    }

    /** True if the front-end gave a call eventfd; false means it polls the used ring (NOFD). */
    boolean hasCall() {
        return call != null;
    }

    /** Signals the call eventfd, if any. Worker thread; does not allocate. */
    void signalCall() {
        EventFd c = call;
        if (c != null) {
            c.signal();
        }
    }

    /** Signals the error eventfd, if any. */
    void signalErr() {
        EventFd e = err;
        if (e != null) {
            e.signal();
        }
    }

    /** After GET_VRING_BASE: the front-end sends fresh kick and call eventfds before a restart. */
    void dropKickAndCall() {
        kick(null);
        kickReceived = false;
        closeQuietly(call);
        call = null;
    }

    /** Back to the state of a new connection: the ring must be stopped. */
    void reset() {
        dropKickAndCall();
        size = 0;
        availPosition = 0;
        usedPosition = 0;
        address = null;
        enabled = false;
    }

    /** Closes every eventfd; the ring must be stopped. */
    void close() {
        reset();
        closeQuietly(err);
        err = null;
    }

    private void retire(EventFd fd) {
        if (fd == null) {
            return;
        }
        if (isStarted()) {
            retired.add(fd);
        } else {
            closeQuietly(fd);
        }
    }

    private static void closeQuietly(EventFd fd) {
        if (fd != null) {
            fd.close();
        }
    }

    @Override
    public String toString() {
        return "ring " + index;
    }
}
