package io.vring.engine;

import io.vring.engine.notify.Notifier;

import java.lang.System.Logger.Level;

/**
 * Whether a queue still works, and why not: the broken state every queue kind shares. The first
 * reason wins; breaking logs one line a person can act on and signals the error notifier once.
 */
public final class QueueHealth {
    private static final System.Logger LOG = System.getLogger("io.vring.engine");

    private final String queueName;
    private volatile String reason;
    private Notifier errorNotifier = Notifier.NONE;

    /** @param queueName how log lines name the queue, e.g. "split device queue 0" */
    public QueueHealth(String queueName) {
        this.queueName = queueName;
    }

    public boolean isBroken() {
        return reason != null;
    }

    public String reason() {
        return reason;
    }

    /**
     * Where to signal when the queue breaks. A queue can break before anyone listens (a ring
     * rejected at construction: misaligned, unbacked, bad size), so a notifier attached to a queue
     * that is already broken is signalled at once: every notifier hears about the break exactly once.
     */
    public void errorNotifier(Notifier notifier) {
        this.errorNotifier = notifier == null ? Notifier.NONE : notifier;
        if (reason != null) {
            signal();
        }
    }

    /** Marks the queue broken; returns false if it already was. */
    public boolean markBroken(String why) {
        if (reason != null) {
            return false;
        }
        reason = why;
        LOG.log(Level.WARNING, "{0} is broken and stops serving: {1}", queueName, why);
        signal();
        return true;
    }

    private void signal() {
        try {
            errorNotifier.signal();
        } catch (RuntimeException e) {
            LOG.log(Level.WARNING, queueName + ": error notifier failed", e);
        }
    }

    /** Clears the broken state (device reset). */
    public void reset() {
        reason = null;
    }

    public String queueName() {
        return queueName;
    }
}
