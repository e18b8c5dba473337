package io.vring.engine.inflight;

import java.util.SplittableRandom;

/**
 * A {@link StoreProbe} that stops the back-end the way a SIGKILL would: by throwing {@link Killed}
 * out of the device queue's call right before ({@link Side#BEFORE}) or right after ({@link Side#AFTER})
 * one store to the inflight region. Every store made until then stays in the shared mappings; the
 * test drops the queue object and starts a new one, as a restarted back-end would.
 */
final class KillSwitch implements StoreProbe {
    /** Which side of a store the kill lands on. */
    enum Side { BEFORE, AFTER }

    /** The simulated kill: never caught by the engine. */
    static final class Killed extends RuntimeException {
        Killed(String where) {
            super("simulated SIGKILL " + where, null, false, false);
        }
    }

    private final Side side;
    private final long at;
    private final SplittableRandom random;
    private final int oneIn;
    private long before;
    private long after;

    private KillSwitch(Side side, long at, SplittableRandom random, int oneIn) {
        this.side = side;
        this.at = at;
        this.random = random;
        this.oneIn = oneIn;
    }

    /** Never kills; counts the stores. */
    static KillSwitch never() {
        return new KillSwitch(Side.AFTER, 0, null, 0);
    }

    /** Kills at the {@code n}-th store (1-based) on {@code side}. */
    static KillSwitch at(Side side, long n) {
        return new KillSwitch(side, n, null, 0);
    }

    /** Kills on either side of each store with probability 1/{@code oneIn} (separate random stream). */
    static KillSwitch randomly(SplittableRandom random, int oneIn) {
        return new KillSwitch(null, 0, random, oneIn);
    }

    @Override
    public void storing() {
        before++;
        if ((side == Side.BEFORE && before == at) || (random != null && random.nextInt(oneIn) == 0)) {
            throw new Killed("before region store " + before);
        }
    }

    @Override
    public void stored() {
        after++;
        if ((side == Side.AFTER && after == at) || (random != null && random.nextInt(oneIn) == 0)) {
            throw new Killed("after region store " + after);
        }
    }

    /** Stores counted on {@code side} so far. */
    long count(Side s) {
        return s == Side.BEFORE ? before : after;
    }
}
