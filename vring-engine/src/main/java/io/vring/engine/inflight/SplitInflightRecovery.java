package io.vring.engine.inflight;

/**
 * What a split queue's inflight region says when its ring starts.
 *
 * @param headsInCounterOrder head descriptor indices popped before the crash and never published as
 *                            used, in the order they were popped: resubmit them before new requests
 * @param nextAvail           the avail index to resume at (used idx + number of inflight heads)
 * @param nextCounter         the counter to give the next popped head
 * @param batchFinished       heads of a half-published batch whose inflight flag recovery cleared
 * @param fresh               true if the region had never been initialised (version 0): nothing was
 *                            known, and {@code nextAvail} is simply the used idx
 */
public record SplitInflightRecovery(int[] headsInCounterOrder, int nextAvail, long nextCounter,
                                    int batchFinished, boolean fresh) {
}
