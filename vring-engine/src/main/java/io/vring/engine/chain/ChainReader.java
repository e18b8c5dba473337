package io.vring.engine.chain;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Reads a chain's device-readable buffers as one byte stream (scatter-gather copy out of guest
 * memory). Reusable: {@link #reset} re-points it at a chain. Does not allocate.
 */
public final class ChainReader {
    private DescriptorChain chain;
    private int buffer;
    private long offsetInBuffer;
    private long remaining;

    /** Starts reading {@code chain}'s readable bytes from the beginning. */
    public ChainReader reset(DescriptorChain chain) {
        this.chain = chain;
        this.buffer = 0;
        this.offsetInBuffer = 0;
        this.remaining = chain.readableBytes();
        return this;
    }

    /** Bytes not yet read. */
    public long remaining() {
        return remaining;
    }

    /** Copies up to {@code length} bytes into {@code dst} at {@code dstOffset}; returns the count copied. */
    public long read(MemorySegment dst, long dstOffset, long length) {
        long want = Math.min(length, remaining);
        long done = 0;
        while (done < want) {
            long inBuffer = chain.length(buffer) - offsetInBuffer;
            long run = Math.min(inBuffer, want - done);
            MemorySegment.copy(chain.segment(buffer), chain.offset(buffer) + offsetInBuffer, dst, dstOffset + done, run);
            done += run;
            advance(run, inBuffer);
        }
        remaining -= done;
        return done;
    }

    /** Copies up to {@code length} bytes into {@code dst} at {@code dstOffset}; returns the count copied. */
    public int read(byte[] dst, int dstOffset, int length) {
        int want = (int) Math.min(length, remaining);
        int done = 0;
        while (done < want) {
            long inBuffer = chain.length(buffer) - offsetInBuffer;
            int run = (int) Math.min(inBuffer, want - done);
            MemorySegment.copy(chain.segment(buffer), ValueLayout.JAVA_BYTE, chain.offset(buffer) + offsetInBuffer,
                    dst, dstOffset + done, run);
            done += run;
            advance(run, inBuffer);
        }
        remaining -= done;
        return done;
    }

    /** Skips up to {@code length} bytes; returns the count skipped. */
    public long skip(long length) {
        long want = Math.min(length, remaining);
        long done = 0;
        while (done < want) {
            long inBuffer = chain.length(buffer) - offsetInBuffer;
            long run = Math.min(inBuffer, want - done);
            done += run;
            advance(run, inBuffer);
        }
        remaining -= done;
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
