package io.vring.jmh;

import org.openjdk.jmh.annotations.AuxCounters;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;

/**
 * Elements the consumer side received; JMH reports them per second as the secondary metric
 * {@code transfers}, which is the figure to read (the group's primary score counts invocations of
 * both sides, including empty polls and full rings). Type OPERATIONS, not EVENTS: EVENTS is a raw
 * count per iteration, OPERATIONS is normalised by time, so the figure is elements/s.
 *
 * <p>Each consumer thread has its own instance (thread scope), so the counter shares no cache line
 * with the producer.
 */
@State(Scope.Thread)
@AuxCounters(AuxCounters.Type.OPERATIONS)
public class Transfers {
    public long transfers;

    @Setup(Level.Iteration)
    public void clear() {
        transfers = 0;
    }
}
