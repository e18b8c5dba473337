package io.vring.engine.notify;

import io.vring.engine.DeviceQueue;
import io.vring.engine.DriverQueue;
import org.agrona.concurrent.IdleStrategy;

/**
 * An Agrona {@link IdleStrategy} that lets a queue worker sleep on its eventfd instead of spinning.
 *
 * <p>When a duty cycle did no work, {@link #idle(int)} runs the lost-wakeup-safe handshake:
 * <ol>
 *   <li>{@link NotificationSwitch#enable()} asks the other side to notify, fences, and re-reads its
 *       index. If work arrived in the window before the request was visible, that work's notification
 *       may never be sent, so the worker does not sleep.</li>
 *   <li>Otherwise it waits on the eventfd, at most {@code timeoutMillis}: the bound keeps an agent
 *       responsive to being stopped even if nobody calls {@link #wakeUp()}, and caps the cost of a
 *       notification lost to a misbehaving peer.</li>
 *   <li>{@link NotificationSwitch#disable()}: the worker polls again, so notifications are just cost.</li>
 * </ol>
 * Used by the one thread that owns the queue. Does not allocate.
 */
public final class EventFdIdleStrategy implements IdleStrategy {
    /** How long one idle period sleeps at most when nothing signals. */
    public static final long DEFAULT_TIMEOUT_MILLIS = 100;

    private final NotificationSwitch notifications;
    private final EventFd eventFd;
    private final long timeoutMillis;

    /**
     * @param notifications the queue's notification switch
     * @param eventFd       the eventfd the other side signals (kick for a device, call for a driver)
     * @param timeoutMillis longest single sleep; negative for none
     */
    public EventFdIdleStrategy(NotificationSwitch notifications, EventFd eventFd, long timeoutMillis) {
        this.notifications = notifications;
        this.eventFd = eventFd;
        this.timeoutMillis = timeoutMillis;
    }

    /** A device worker sleeping on the driver's kicks. */
    public static EventFdIdleStrategy forDevice(DeviceQueue queue, EventFd kick) {
        return new EventFdIdleStrategy(new NotificationSwitch() {
            @Override
            public boolean enable() {
                return queue.enableNotification();
            }

            @Override
            public void disable() {
                queue.disableNotification();
            }
        }, kick, DEFAULT_TIMEOUT_MILLIS);
    }

    /** A driver worker sleeping on the device's used-buffer calls. */
    public static EventFdIdleStrategy forDriver(DriverQueue queue, EventFd call) {
        return new EventFdIdleStrategy(new NotificationSwitch() {
            @Override
            public boolean enable() {
                return queue.enableUsedNotification();
            }

            @Override
            public void disable() {
                queue.disableUsedNotification();
            }
        }, call, DEFAULT_TIMEOUT_MILLIS);
    }

    /** Returns at once if {@code workCount > 0}; else the enable / recheck / sleep / disable handshake. */
    @Override
    public void idle(int workCount) {
        if (workCount > 0) {
            return;
        }
        idle();
    }

    /** One enable / recheck / sleep / disable round, whatever the last duty cycle did. */
    @Override
    public void idle() {
        if (!notifications.enable()) {
            eventFd.await(timeoutMillis);
        }
        notifications.disable();
    }

    /** Nothing to reset: the strategy has no back-off state. */
    @Override
    public void reset() {
    }

    @Override
    public String alias() {
        return "eventfd";
    }

    /**
     * Signals the eventfd so a worker sleeping in {@link #idle} returns now, e.g. when its agent is
     * being stopped. Safe from any thread; the worker sees one spurious wake-up.
     */
    public void wakeUp() {
        eventFd.signal();
    }

    /** The eventfd this strategy sleeps on. */
    public EventFd eventFd() {
        return eventFd;
    }
}
