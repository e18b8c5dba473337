package io.vring.backends.blk;

import org.agrona.concurrent.ManyToManyConcurrentArrayQueue;

import java.lang.System.Logger.Level;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Consumer;

/**
 * The block device's I/O threads: a few threads that take request slots from one shared queue and
 * carry them out (blocking {@code pread}/{@code pwrite}/{@code fdatasync}), so a ring worker never
 * blocks on the disk and requests finish in whatever order the disk finishes them.
 *
 * <p>An idle thread parks. The wake-up is a Dekker pair: the thread sets its {@code idle} flag and
 * then re-reads the queue before parking; a submitter offers to the queue and then reads the flags.
 * Both are volatile accesses (the offer is a CAS), so at least one side sees the other: either the
 * thread finds the request, or the submitter finds the thread idle and unparks it. An unpark that
 * comes before the park is kept as the thread's permit, so it is never lost.
 *
 * <p>Started and stopped by the control thread; {@link #submit} is called by ring workers and
 * allocates nothing.
 */
final class IoPool {
    private static final System.Logger LOG = System.getLogger(IoPool.class.getName());
    private static final long JOIN_TIMEOUT_MILLIS = 10_000;

    private final ManyToManyConcurrentArrayQueue<BlkRequest> pending;
    private final Consumer<BlkRequest> executor;
    private final int threadCount;
    private Worker[] workers;
    private volatile boolean running;

    /** @param capacity the most requests ever queued at once (every slot of every ring) */
    IoPool(int threadCount, int capacity, Consumer<BlkRequest> executor) {
        if (threadCount < 1) {
            throw new IllegalArgumentException("at least one I/O thread, got " + threadCount);
        }
        this.threadCount = threadCount;
        this.pending = new ManyToManyConcurrentArrayQueue<>(capacity);
        this.executor = executor;
    }

    private final class Worker implements Runnable {
        final AtomicBoolean idle = new AtomicBoolean();
        Thread thread;

        @Override
        public void run() {
            while (running) {
                BlkRequest r = pending.poll();
                if (r != null) {
                    executor.accept(r);
                    continue;
                }
                idle.set(true);
                if (!pending.isEmpty() || !running) {
                    idle.set(false);
                    continue;
                }
                LockSupport.park(this);
                idle.set(false);
            }
        }
    }

    boolean isRunning() {
        return running;
    }

    /** Starts the threads ({@code vring-blk-io-N}); does nothing if they run. */
    synchronized void start() {
        if (running) {
            return;
        }
        running = true;
        workers = new Worker[threadCount];
        for (int i = 0; i < threadCount; i++) {
            Worker w = new Worker();
            w.thread = new Thread(w, "vring-blk-io-" + i);
            w.thread.setDaemon(true);
            workers[i] = w;
        }
        for (Worker w : workers) {
            w.thread.start();
        }
    }

    /**
     * Queues a request for an I/O thread and wakes an idle one. Never blocks: the queue holds every
     * slot there is, so it cannot be full.
     */
    void submit(BlkRequest r) {
        if (!pending.offer(r)) {
            throw new IllegalStateException("I/O queue full: more requests than slots");
        }
        for (Worker w : workers) {
            if (w.idle.get() && w.idle.compareAndSet(true, false)) {
                LockSupport.unpark(w.thread);
                return;
            }
        }
    }

    /**
     * Ends the threads once they finished the request in hand; the caller has waited for every
     * request it submitted, so nothing is left queued.
     */
    synchronized void stop() {
        if (!running) {
            return;
        }
        running = false;
        for (Worker w : workers) {
            LockSupport.unpark(w.thread);
        }
        for (Worker w : workers) {
            try {
                w.thread.join(JOIN_TIMEOUT_MILLIS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
            if (w.thread.isAlive()) {
                LOG.log(Level.ERROR, "{0} still runs {1} s after it was told to stop (an I/O call that does not return?)",
                        w.thread.getName(), TimeUnit.MILLISECONDS.toSeconds(JOIN_TIMEOUT_MILLIS));
            }
        }
        if (!pending.isEmpty()) {
            LOG.log(Level.ERROR, "{0} requests were still queued when the I/O threads stopped", pending.size());
            pending.clear();
        }
    }
}
