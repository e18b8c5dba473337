package io.vring.engine.notify;

/**
 * Turns the other side's notifications to this side on and off: what a worker flips around sleeping.
 * {@code DeviceQueue.enableNotification()/disableNotification()} (kicks) and
 * {@code DriverQueue.enableUsedNotification()/disableUsedNotification()} (calls) are the two.
 */
public interface NotificationSwitch {

    /**
     * Asks the other side to notify, then (after a full fence) checks again for work that arrived
     * before the request was visible. Returns true if there is such work: then the caller must not
     * sleep, because the notification for it may never come.
     */
    boolean enable();

    /** Asks the other side not to notify: the caller is about to poll. A hint; notifications may still come. */
    void disable();
}
