package io.vring.protocol;

import io.vring.engine.DeviceQueue;
import io.vring.engine.notify.EventFd;
import io.vring.engine.notify.EventFdIdleStrategy;
import io.vring.engine.notify.NotificationSwitch;
import org.agrona.concurrent.Agent;
import org.agrona.concurrent.AgentRunner;
import org.agrona.concurrent.BackoffIdleStrategy;
import org.agrona.concurrent.IdleStrategy;

import java.lang.System.Logger.Level;

/**
 * The thread that runs one started ring: an Agrona {@link Agent} whose duty cycle asks the device to
 * process the ring, publishes what it staged and calls the driver if it wants a call.
 *
 * <p>Idle: with a kick eventfd the worker enables notifications, re-checks the ring and sleeps on
 * the kick ({@link EventFdIdleStrategy}); without one (the NOFD bit, or busy-poll mode) it spins,
 * yields, then parks for short moments ({@link BackoffIdleStrategy}). A disabled ring is not
 * processed and does not turn notifications on, so it sleeps until it is enabled or stopped.
 *
 * <p>Started and stopped by the control thread only; {@link #stop()} returns once the thread has
 * left its duty cycle, so the control thread then owns the queue again.
 */
final class RingWorker implements Agent, RingHandle {
    private static final System.Logger LOG = System.getLogger(RingWorker.class.getName());

    private final Vring ring;
    private final Backend backend;
    private final DeviceQueue queue;
    private final EventFd kick;
    private final IdleStrategy idle;
    private final String roleName;
    private AgentRunner runner;
    /** Set by stop(): the worker must not go back to sleep, its thread is about to be told to end. */
    private volatile boolean stopping;
    /**
     * The last duty cycle did nothing although chains were available: the device declined them
     * (a vsock rx ring full of the guest's buffers and nothing to send). Its contract is to call
     * {@link #wakeUp()} when it has work, so the worker sleeps instead of spinning on the buffers.
     * Worker thread only.
     */
    private boolean declined;

    RingWorker(Vring ring, Backend backend, DeviceQueue queue, EventFd kick, boolean busyPoll, String roleName) {
        this.ring = ring;
        this.backend = backend;
        this.queue = queue;
        this.roleName = roleName;
        if (kick != null && !busyPoll) {
            this.kick = kick;
            this.idle = new EventFdIdleStrategy(new NotificationSwitch() {
                @Override
                public boolean enable() {
                    if (stopping) {
                        return true; // "work to do": do not sleep, the runner is closing
                    }
                    if (!ring.isEnabled()) {
                        return false;
                    }
                    boolean available = queue.enableNotification();
                    return available && !declined;
                }

                @Override
                public void disable() {
                    queue.disableNotification();
                }
            }, kick, EventFdIdleStrategy.DEFAULT_TIMEOUT_MILLIS);
        } else {
            this.kick = null;
            this.idle = new BackoffIdleStrategy();
            queue.disableNotification();
        }
    }

    /** Starts the worker thread; its first duty cycle processes whatever the ring already holds. */
    void start() {
        runner = new AgentRunner(idle, this::failed, null, this);
        AgentRunner.startOnThread(runner, r -> {
            Thread t = new Thread(r, roleName);
            t.setDaemon(true);
            return t;
        });
    }

    /** Stops the thread and waits for it; afterwards the caller owns the queue. */
    void stop() {
        AgentRunner r = runner;
        if (r == null) {
            return;
        }
        runner = null;
        stopping = true;
        wakeUp();
        r.close(AgentRunner.RETRY_CLOSE_TIMEOUT_MS, thread -> {
            LOG.log(Level.WARNING, "{0}: worker still inside the device''s process() after {1} ms; waiting on",
                    roleName, AgentRunner.RETRY_CLOSE_TIMEOUT_MS);
        });
    }

    @Override
    public int doWork() {
        if (stopping || !ring.isEnabled() || queue.isBroken()) {
            return 0;
        }
        int work = backend.process(ring.index(), queue);
        queue.publish();
        // No call fd (SET_VRING_CALL with NOFD) means the front-end polls the used ring: asking whether
        // it wants a call would cost a full fence per duty cycle for an answer nobody can act on.
        if (ring.hasCall() && queue.needsNotification()) {
            ring.signalCall();
        }
        declined = work == 0 && queue.hasAvailable();
        return work;
    }

    private void failed(Throwable t) {
        LOG.log(Level.ERROR, roleName + ": the device failed while processing the ring; marking it broken", t);
        queue.markBroken("the device failed: " + t);
    }

    @Override
    public int queueIndex() {
        return ring.index();
    }

    /** Wakes a worker asleep on the kick eventfd (a spinning one needs nothing). */
    @Override
    public void wakeUp() {
        if (kick != null && !kick.isClosed()) {
            kick.signal();
        }
    }

    @Override
    public String roleName() {
        return roleName;
    }
}
