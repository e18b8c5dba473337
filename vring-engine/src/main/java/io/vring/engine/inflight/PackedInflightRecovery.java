package io.vring.engine.inflight;

import java.util.List;

/**
 * What a packed queue's inflight region says when its ring starts.
 *
 * @param chainsInCounterOrder chains fetched before the crash and never published as used, in fetch
 *                             order: resubmit them before new requests, rebuilt from the descriptors
 *                             recorded here (their ring slots may have been overwritten since)
 * @param nextAvailSlot        ring slot to resume fetching at: the used position plus the ring
 *                             descriptors of every inflight chain
 * @param nextAvailWrap        the driver wrap counter that goes with {@code nextAvailSlot}
 * @param usedSlot             ring slot where the next used descriptor goes
 * @param usedWrap             the device's used wrap counter that goes with {@code usedSlot}
 * @param nextCounter          the counter to give the next fetched chain
 * @param batchCommitted       true if a batch whose publication the driver could already see was
 *                             committed (false: an unseen batch, if any, was rolled back)
 * @param fresh                true if the region had never been initialised (version 0): it has been
 *                             initialised, nothing was known, use the front-end's ring base
 * @param rolledBackSlots      ring slots from ({@code usedSlot}, {@code usedWrap}) that a rolled-back
 *                             batch covered (0 if none): the crashed device may have stored used
 *                             descriptors there, all but the batch's first, which the driver must
 *                             never see, since their chains are resubmitted
 */
public record PackedInflightRecovery(List<Chain> chainsInCounterOrder, int nextAvailSlot, int nextAvailWrap,
                                     int usedSlot, int usedWrap, long nextCounter, boolean batchCommitted,
                                     boolean fresh, int rolledBackSlots) {

    public PackedInflightRecovery {
        chainsInCounterOrder = List.copyOf(chainsInCounterOrder);
    }

    /**
     * One inflight chain.
     *
     * @param entry       its first entry in the region: pass it to {@link PackedInflightQueue#releaseChain}
     *                    when the resubmitted request completes
     * @param counter     fetch order
     * @param id          buffer id (of the chain's last descriptor), the id its used descriptor carries
     * @param descriptors the ring descriptors in chain order (one for an indirect table)
     */
    public record Chain(int entry, long counter, int id, List<Descriptor> descriptors) {
        public Chain {
            descriptors = List.copyOf(descriptors);
        }

        /** Ring slots the chain took, by which the used position advances when it completes. */
        public int slots() {
            return descriptors.size();
        }
    }

    /** A ring descriptor as the device read it. */
    public record Descriptor(long addr, int len, int id, int flags) {
    }
}
