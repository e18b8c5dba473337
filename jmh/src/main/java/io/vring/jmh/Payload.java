package io.vring.jmh;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;

/**
 * "The same transfer" every throughput and latency benchmark moves, vring and peers alike: one
 * element is {@value #BYTES} bytes. The producer stamps a sequence number into the first 8 bytes of
 * its private 64-byte source and copies all 64 bytes into the shared buffer (a ring buffer a
 * descriptor points to, a pooled {@code byte[]} slot, an Agrona ring record); the consumer copies
 * all 64 bytes out of the shared buffer into its private scratch and reads the sequence number back
 * (handed to a Blackhole). So nobody wins by moving empty descriptors or bare references.
 */
public final class Payload {
    /** Bytes per element. */
    public static final int BYTES = 64;
    /** Little-endian long view of a {@code byte[]} (no allocation, no bounds surprises). */
    public static final VarHandle BYTES_LONG = MethodHandles.byteArrayViewVarHandle(long[].class, ByteOrder.LITTLE_ENDIAN);

    /** Sequence number at the start of a native payload. */
    public static long sequence(MemorySegment payload) {
        return payload.get(ValueLayout.JAVA_LONG_UNALIGNED, 0);
    }

    /** Stamps a sequence number at the start of a native payload. */
    public static void stamp(MemorySegment payload, long sequence) {
        payload.set(ValueLayout.JAVA_LONG_UNALIGNED, 0, sequence);
    }

    private Payload() {
    }
}
