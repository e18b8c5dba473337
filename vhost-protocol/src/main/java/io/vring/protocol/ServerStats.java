package io.vring.protocol;

import io.vring.engine.RingKind;

import java.util.concurrent.atomic.AtomicLong;

/**
 * Counters of one {@link BackendServer}, for people (logs, a stats command) and tests: sessions
 * served, rings started per layout, queues that broke, requests refused.
 */
public final class ServerStats {
    private final AtomicLong sessions = new AtomicLong();
    private final AtomicLong sessionsEnded = new AtomicLong();
    private final AtomicLong splitStarts = new AtomicLong();
    private final AtomicLong packedStarts = new AtomicLong();
    private final AtomicLong broken = new AtomicLong();
    private final AtomicLong refused = new AtomicLong();

    void sessionStarted() {
        sessions.incrementAndGet();
    }

    void sessionEnded() {
        sessionsEnded.incrementAndGet();
    }

    void ringStarted(RingKind kind) {
        (kind == RingKind.PACKED ? packedStarts : splitStarts).incrementAndGet();
    }

    void ringBroke() {
        broken.incrementAndGet();
    }

    void refused() {
        refused.incrementAndGet();
    }

    /** Front-end connections accepted so far. */
    public long sessions() {
        return sessions.get();
    }

    /** Front-end connections that have ended and been cleaned up. */
    public long sessionsEnded() {
        return sessionsEnded.get();
    }

    /** Ring starts with the given layout (a ring restarted after a reset counts again). */
    public long ringStarts(RingKind kind) {
        return (kind == RingKind.PACKED ? packedStarts : splitStarts).get();
    }

    /** Queues the engine marked broken. */
    public long brokenQueues() {
        return broken.get();
    }

    /** Well-formed requests the server refused. */
    public long refusedRequests() {
        return refused.get();
    }

    @Override
    public String toString() {
        return "sessions " + sessions() + " (" + sessionsEnded() + " ended), ring starts split " + ringStarts(RingKind.SPLIT)
                + " packed " + ringStarts(RingKind.PACKED) + ", broken queues " + brokenQueues() + ", refused requests "
                + refusedRequests();
    }
}
