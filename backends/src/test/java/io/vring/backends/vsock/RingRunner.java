package io.vring.backends.vsock;

import io.vring.engine.DeviceQueue;
import io.vring.protocol.Backend;
import io.vring.protocol.RingHandle;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.locks.LockSupport;

/**
 * Stands in for the control plane's ring worker in tests: one thread per ring that calls
 * {@link Backend#process}, publishes, and parks when idle until {@link #wakeUp()} (or 200 µs, since
 * the test driver does not kick), so device tests run without a control plane.
 */
final class RingRunner implements RingHandle, AutoCloseable {
    private final int queueIndex;
    private final Backend backend;
    private final DeviceQueue queue;
    private final Thread thread;
    private final AtomicBoolean woken = new AtomicBoolean();
    private volatile boolean running = true;
    private volatile Throwable failure;

    RingRunner(String name, int queueIndex, Backend backend, DeviceQueue queue) {
        this.queueIndex = queueIndex;
        this.backend = backend;
        this.queue = queue;
        this.thread = Thread.ofPlatform().name(name).daemon().unstarted(this::run);
    }

    void begin() {
        thread.start();
    }

    private void run() {
        try {
            while (running) {
                int done = backend.process(queueIndex, queue);
                queue.publish();
                if (done == 0 && !woken.getAndSet(false)) {
                    LockSupport.parkNanos(TimeUnit.MICROSECONDS.toNanos(200));
                }
            }
        } catch (Throwable t) {
            failure = t;
        }
    }

    /** Bytes the worker thread has allocated so far (HotSpot's per-thread counter). */
    long allocatedBytes() {
        return ((com.sun.management.ThreadMXBean) java.lang.management.ManagementFactory.getThreadMXBean())
                .getThreadAllocatedBytes(thread.threadId());
    }

    /** What the worker thread threw, or null: a device must never let an exception out of process. */
    Throwable failure() {
        return failure;
    }

    @Override
    public int queueIndex() {
        return queueIndex;
    }

    @Override
    public void wakeUp() {
        woken.set(true);
        LockSupport.unpark(thread);
    }

    /** Stops and joins the thread; the queue is the caller's again. */
    @Override
    public void close() throws InterruptedException {
        running = false;
        LockSupport.unpark(thread);
        thread.join(TimeUnit.SECONDS.toMillis(5));
        if (thread.isAlive()) {
            throw new IllegalStateException(thread.getName() + " did not stop");
        }
    }
}
