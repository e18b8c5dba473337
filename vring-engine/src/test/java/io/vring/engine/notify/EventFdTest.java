package io.vring.engine.notify;

import io.vring.engine.os.Libc;
import io.vring.engine.os.NativeCallException;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

class EventFdTest {

    @Test
    void threeSignalsDrainAsThree() {
        try (EventFd e = EventFd.create()) {
            e.signal();
            e.signal();
            e.signal();
            assertEquals(3, e.drain());
            assertEquals(0, e.drain());
        }
    }

    @Test
    void drainingAnUnsignalledEventFdReturnsZeroAtOnce() {
        try (EventFd e = EventFd.create()) {
            assertEquals(0, e.drain());
        }
    }

    @Test
    void awaitTimesOutThenSucceedsWhenAnotherThreadSignals() throws Exception {
        try (EventFd e = EventFd.create()) {
            long start = System.nanoTime();
            assertFalse(e.await(30));
            assertTrue(System.nanoTime() - start >= Duration.ofMillis(25).toNanos(), "waited for the timeout");

            Thread signaller = Thread.ofPlatform().start(() -> {
                sleep(50);
                e.signal();
            });
            assertTimeoutPreemptively(Duration.ofSeconds(5), () -> assertTrue(e.await(10_000)));
            signaller.join();
            assertEquals(0, e.drain(), "await drained the counter");
        }
    }

    @Test
    void awaitReturnsAtOnceWhenAlreadySignalled() {
        try (EventFd e = EventFd.create()) {
            e.signal();
            assertTrue(e.await(0));
            assertFalse(e.await(0));
        }
    }

    @Test
    void aWrappedFdSharesItsCounterAndAdoptsOwnership() {
        int fd = Libc.eventfd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK);
        EventFd e = EventFd.wrap(fd);
        assertEquals(fd, e.fd());
        Libc.eventfdWrite(fd, 5);
        assertEquals(5, e.drain());
        e.close();
        assertThrows(NativeCallException.class, () -> Libc.fcntl(fd, Libc.F_GETFD, 0));
    }

    @Test
    void aWrappedBlockingEventFdDrainsToZeroWithoutBlocking() {
        try (EventFd e = EventFd.wrap(Libc.eventfd(0, Libc.EFD_CLOEXEC))) {
            assertTimeoutPreemptively(Duration.ofSeconds(5), () -> assertEquals(0, e.drain()));
            e.signal();
            e.signal();
            assertEquals(2, e.drain());
        }
    }

    @Test
    void wrappingAnFdThatIsNotOpenThrowsEbadf() {
        NativeCallException err = assertThrows(NativeCallException.class, () -> EventFd.wrap(9999));
        assertEquals(Libc.EBADF, err.errno());
    }

    @Test
    void closeIsIdempotentClosesTheFdAndLaterCallsDoNothing() {
        EventFd e = EventFd.create();
        int fd = e.fd();
        e.close();
        e.close();
        assertTrue(e.isClosed());
        assertThrows(NativeCallException.class, () -> Libc.fcntl(fd, Libc.F_GETFD, 0));
        e.signal();
        assertEquals(0, e.drain());
        assertFalse(e.await(1_000));
    }

    @Test
    void closeWakesAThreadWaitingInAwait() throws Exception {
        EventFd e = EventFd.create();
        CountDownLatch waiting = new CountDownLatch(1);
        AtomicReference<Boolean> result = new AtomicReference<>();
        Thread waiter = Thread.ofPlatform().start(() -> {
            waiting.countDown();
            result.set(e.await(60_000));
        });
        waiting.await();
        sleep(50);
        assertTimeoutPreemptively(Duration.ofSeconds(5), () -> {
            e.close();
            waiter.join();
        });
        assertFalse(result.get(), "an await ended by close reports no signal");
    }

    @Test
    void signalsRacingCloseNeverFailAndNeverOutliveTheFd() throws Exception {
        for (int round = 0; round < 50; round++) {
            EventFd e = EventFd.create();
            AtomicReference<Throwable> failure = new AtomicReference<>();
            CountDownLatch started = new CountDownLatch(2);
            Thread[] signallers = new Thread[2];
            for (int t = 0; t < signallers.length; t++) {
                signallers[t] = Thread.ofPlatform().start(() -> {
                    started.countDown();
                    try {
                        while (!e.isClosed()) {
                            e.signal();
                        }
                        e.signal();
                    } catch (Throwable x) {
                        failure.compareAndSet(null, x);
                    }
                });
            }
            started.await();
            e.close();
            for (Thread t : signallers) {
                t.join();
            }
            assertNull(failure.get(), () -> "signal failed while closing: " + failure.get());
        }
    }

    private static void sleep(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException ex) {
            Thread.currentThread().interrupt();
        }
    }
}
