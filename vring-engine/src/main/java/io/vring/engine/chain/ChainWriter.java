package io.vring.engine.chain;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Writes a chain's device-writable buffers as one byte stream (scatter-gather copy into guest
 * memory). {@link #written()} is the used length to report. Reusable; does not allocate.
 */
public final class ChainWriter {
    private DescriptorChain chain;
    private int buffer;
    private long offsetInBuffer;
    private long remaining;
    private long written;

    /** Starts writing {@code chain}'s writable buffers from the beginning. */
    public ChainWriter reset(DescriptorChain chain) {
        this.chain = chain;
        this.buffer = chain.readableCount();
        this.offsetInBuffer = 0;
        this.remaining = chain.writableBytes();
        this.written = 0;
        return this;
    }

    /** Writable bytes left. */
    public long remaining() {
        return remaining;
    }

    /** Bytes written so far: the used length to report for the chain. */
    public long written() {
        return written;
    }

    /** Copies up to {@code length} bytes from {@code src} at {@code srcOffset}; returns the count copied. */
    public long write(MemorySegment src, long srcOffset, long length) {
        long want = Math.min(length, remaining);
        long done = 0;
        while (done < want) {
            long inBuffer = chain.length(buffer) - offsetInBuffer;
            long run = Math.min(inBuffer, want - done);
            MemorySegment.copy(src, srcOffset + done, chain.segment(buffer), chain.offset(buffer) + offsetInBuffer, run);
            done += run;
            advance(run, inBuffer);
        }
        remaining -= done;
        written += done;
        return done;
    }

    /** Copies up to {@code length} bytes from {@code src} at {@code srcOffset}; returns the count copied. */
    public int write(byte[] src, int srcOffset, int length) {
        int want = (int) Math.min(length, remaining);
        int done = 0;
        while (done < want) {
            long inBuffer = chain.length(buffer) - offsetInBuffer;
            int run = (int) Math.min(inBuffer, want - done);
            MemorySegment.copy(src, srcOffset + done, chain.segment(buffer), ValueLayout.JAVA_BYTE,
                    chain.offset(buffer) + offsetInBuffer, run);
            done += run;
            advance(run, inBuffer);
        }
        remaining -= done;
        written += done;
        return done;
    }

    private void advance(long run, long inBuffer) {
        if (run == inBuffer) {
            buffer++;
            offsetInBuffer = 0;
        } else {
            offsetInBuffer += run;
        }
    }
}
