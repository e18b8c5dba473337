package io.vring.engine.notify;

import io.vring.engine.DeviceQueue;
import io.vring.engine.DriverQueue;
import org.junit.jupiter.api.Test;

import java.lang.reflect.Proxy;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

class EventFdIdleStrategyTest {

    /** Records the handshake; {@code workAfterEnable} is what the fence + recheck finds. */
    private static final class RecordingSwitch implements NotificationSwitch {
        final List<String> calls = new ArrayList<>();
        boolean workAfterEnable;

        @Override
        public boolean enable() {
            calls.add("enable");
            return workAfterEnable;
        }

        @Override
        public void disable() {
            calls.add("disable");
        }
    }

    @Test
    void aDutyCycleThatDidWorkReturnsWithoutTouchingNotifications() {
        RecordingSwitch sw = new RecordingSwitch();
        try (EventFd e = EventFd.create()) {
            new EventFdIdleStrategy(sw, e, 60_000).idle(1);
            assertEquals(List.of(), sw.calls);
        }
    }

    @Test
    void doesNotSleepWhenEnableReportsWorkThatArrivedMeanwhile() {
        RecordingSwitch sw = new RecordingSwitch();
        sw.workAfterEnable = true;
        try (EventFd e = EventFd.create()) {
            EventFdIdleStrategy idle = new EventFdIdleStrategy(sw, e, 60_000);
            assertTimeoutPreemptively(Duration.ofSeconds(5), () -> idle.idle(0));
            assertEquals(List.of("enable", "disable"), sw.calls);
        }
    }

    @Test
    void sleepsUntilTheEventFdIsSignalledThenDisablesNotifications() throws Exception {
        RecordingSwitch sw = new RecordingSwitch();
        try (EventFd e = EventFd.create()) {
            EventFdIdleStrategy idle = new EventFdIdleStrategy(sw, e, 60_000);
            Thread kicker = Thread.ofPlatform().start(() -> {
                sleepQuietly(50);
                e.signal();
            });
            long start = System.nanoTime();
            assertTimeoutPreemptively(Duration.ofSeconds(5), () -> idle.idle(0));
            assertTrue(System.nanoTime() - start >= Duration.ofMillis(40).toNanos(), "it slept until signalled");
            kicker.join();
            assertEquals(List.of("enable", "disable"), sw.calls);
            assertEquals(0, e.drain(), "the signal was consumed");
        }
    }

    @Test
    void sleepsNoLongerThanTheTimeoutWhenNothingSignals() {
        RecordingSwitch sw = new RecordingSwitch();
        try (EventFd e = EventFd.create()) {
            EventFdIdleStrategy idle = new EventFdIdleStrategy(sw, e, 20);
            assertTimeoutPreemptively(Duration.ofSeconds(5), () -> idle.idle());
            assertEquals(List.of("enable", "disable"), sw.calls);
        }
    }

    @Test
    void wakeUpReturnsASleepingWorkerPromptly() throws Exception {
        RecordingSwitch sw = new RecordingSwitch();
        try (EventFd e = EventFd.create()) {
            EventFdIdleStrategy idle = new EventFdIdleStrategy(sw, e, 60_000);
            Thread worker = Thread.ofPlatform().start(() -> idle.idle(0));
            sleepQuietly(50);
            idle.wakeUp();
            assertTimeoutPreemptively(Duration.ofSeconds(5), () -> worker.join());
            assertFalse(worker.isAlive());
        }
    }

    @Test
    void forDeviceFlipsTheDeviceQueuesKickNotification() {
        List<String> calls = new ArrayList<>();
        DeviceQueue queue = proxy(DeviceQueue.class, calls, "enableNotification");
        try (EventFd kick = EventFd.create()) {
            EventFdIdleStrategy idle = EventFdIdleStrategy.forDevice(queue, kick);
            assertTimeoutPreemptively(Duration.ofSeconds(5), () -> idle.idle(0));
            assertEquals(List.of("enableNotification", "disableNotification"), calls);
            assertEquals("eventfd", idle.alias());
        }
    }

    @Test
    void forDriverFlipsTheDriverQueuesUsedNotification() {
        List<String> calls = new ArrayList<>();
        DriverQueue queue = proxy(DriverQueue.class, calls, "enableUsedNotification");
        try (EventFd call = EventFd.create()) {
            EventFdIdleStrategy idle = EventFdIdleStrategy.forDriver(queue, call);
            assertTimeoutPreemptively(Duration.ofSeconds(5), () -> idle.idle(0));
            assertEquals(List.of("enableUsedNotification", "disableUsedNotification"), calls);
        }
    }

    /** A queue whose {@code enableMethod} reports work already there (so idle never sleeps) and that records calls. */
    private static <T> T proxy(Class<T> type, List<String> calls, String enableMethod) {
        return type.cast(Proxy.newProxyInstance(type.getClassLoader(), new Class<?>[] {type}, (p, method, args) -> {
            calls.add(method.getName());
            return method.getName().equals(enableMethod) ? Boolean.TRUE : null;
        }));
    }

    private static void sleepQuietly(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException ex) {
            Thread.currentThread().interrupt();
        }
    }
}
