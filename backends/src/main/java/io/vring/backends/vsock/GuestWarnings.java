package io.vring.backends.vsock;

import java.util.concurrent.TimeUnit;

/**
 * WARNING lines about what the guest did wrong, at most one a second per device: a hostile guest
 * can send millions of bad packets, and each must not cost a log line. Lines in between go to DEBUG
 * and the next WARNING says how many there were; the stats count every one. Callers hold the table's
 * lock.
 */
final class GuestWarnings {
    private static final long INTERVAL_NANOS = TimeUnit.SECONDS.toNanos(1);

    private final System.Logger log;
    private final String name;
    private long lastWarning = System.nanoTime() - INTERVAL_NANOS;
    private long suppressed;

    GuestWarnings(System.Logger log, String name) {
        this.log = log;
        this.name = name;
    }

    void warn(String what) {
        long now = System.nanoTime();
        if (now - lastWarning >= INTERVAL_NANOS) {
            lastWarning = now;
            String more = suppressed == 0 ? "" : " (" + suppressed + " more since the last warning, logged at DEBUG)";
            suppressed = 0;
            log.log(System.Logger.Level.WARNING, name + ": " + what + more);
        } else {
            suppressed++;
            log.log(System.Logger.Level.DEBUG, name + ": " + what);
        }
    }
}
