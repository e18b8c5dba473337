package io.vring.backends.blk;

import java.util.concurrent.atomic.LongAdder;

/** What the block device did, counted by ring workers and I/O threads; read at any time, e.g. on exit. */
public final class BlkStats {
    final LongAdder reads = new LongAdder();
    final LongAdder writes = new LongAdder();
    final LongAdder flushes = new LongAdder();
    final LongAdder getIds = new LongAdder();
    final LongAdder discards = new LongAdder();
    final LongAdder writeZeroes = new LongAdder();
    final LongAdder bytesRead = new LongAdder();
    final LongAdder bytesWritten = new LongAdder();
    final LongAdder ioErrors = new LongAdder();
    final LongAdder refusedIoErr = new LongAdder();
    final LongAdder refusedUnsupp = new LongAdder();
    final LongAdder outOfOrder = new LongAdder();

    void refused(byte status) {
        (status == BlkLayout.S_UNSUPP ? refusedUnsupp : refusedIoErr).increment();
    }

    /** IN requests the disk carried out. */
    public long reads() {
        return reads.sum();
    }

    /** OUT requests the disk carried out. */
    public long writes() {
        return writes.sum();
    }

    public long flushes() {
        return flushes.sum();
    }

    public long bytesRead() {
        return bytesRead.sum();
    }

    public long bytesWritten() {
        return bytesWritten.sum();
    }

    /** Requests the disk failed (the guest got IOERR). */
    public long ioErrors() {
        return ioErrors.sum();
    }

    /** Requests refused before reaching the disk, by the status they got. */
    public long refusedWithIoErr() {
        return refusedIoErr.sum();
    }

    public long refusedWithUnsupp() {
        return refusedUnsupp.sum();
    }

    /**
     * Completions staged after a request submitted later on the same ring had already been staged:
     * the device really finished requests out of order.
     */
    public long outOfOrderCompletions() {
        return outOfOrder.sum();
    }

    @Override
    public String toString() {
        return "reads " + reads.sum() + " (" + bytesRead.sum() + " bytes), writes " + writes.sum() + " (" + bytesWritten.sum()
                + " bytes), flushes " + flushes.sum() + ", get-id " + getIds.sum() + ", discards " + discards.sum()
                + ", write-zeroes " + writeZeroes.sum() + ", I/O errors " + ioErrors.sum() + ", refused " + refusedIoErr.sum()
                + " IOERR / " + refusedUnsupp.sum() + " UNSUPP, completed out of order " + outOfOrder.sum();
    }
}
