package io.vring.engine.memory;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;

/**
 * The dirty-page log of a live migration (vhost-user LOG_SHMFD, reference §4.5): a bitmap over the
 * whole guest-physical address space from 0, one bit per 4 KiB page, bit {@code page % 8} of byte
 * {@code page / 8}, which the front-end reads and clears while the back-end sets bits. A back-end
 * marks every page it writes through a descriptor, after the write.
 *
 * <p><b>Atomicity.</b> The front-end clears words concurrently, so a bit is set with an atomic OR,
 * never a read-modify-write. Segment var handles offer bitwise atomics on {@code int} and
 * {@code long} only, so the OR goes to the aligned little-endian 64-bit word that holds the page's
 * bit: bit {@code page % 64} of the word at byte {@code (page / 64) * 8} is exactly bit
 * {@code page % 8} of byte {@code page / 8}. The OR has release semantics: the guest-memory writes
 * the device made before marking are visible to a front-end that sees the bit (it copies the page
 * after clearing the word).
 *
 * <p><b>Bounds.</b> The front-end sizes the log for its guest memory; a page whose word lies past the
 * mapping cannot be marked. That is the front-end's mistake, not a reason to stop the device: such
 * pages are counted ({@link #missedPages()}) and the first one is logged. The log never writes outside
 * its mapping.
 *
 * <p>Thread-safe: any number of ring workers may mark the same log at once. {@link #mark} does not
 * allocate.
 */
public final class DirtyLog {
    /** Bytes per logged page (VHOST_LOG_PAGE). */
    public static final long PAGE_SIZE = 4096;
    private static final int PAGE_SHIFT = 12;
    private static final System.Logger LOG = System.getLogger(DirtyLog.class.getName());
    private static final VarHandle WORD = ValueLayout.JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN).varHandle();
    private static final VarHandle MISSED;

    static {
        try {
            MISSED = java.lang.invoke.MethodHandles.lookup().findVarHandle(DirtyLog.class, "missed", long.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    private final MemorySegment log;
    /** Pages the whole 64-bit words of the mapping cover. */
    private final long pages;
    @SuppressWarnings("unused") // through MISSED
    private volatile long missed;

    private DirtyLog(MemorySegment log) {
        this.log = log;
        this.pages = (log.byteSize() / Long.BYTES) * Long.SIZE;
    }

    /**
     * A log over the mapping of SET_LOG_BASE ({@code mmap_size} bytes from {@code mmap_offset}).
     *
     * @throws IllegalArgumentException if the mapping is not native and 8-byte aligned
     */
    public static DirtyLog over(MemorySegment log) {
        if (log == null || !log.isNative() || (log.address() & (Long.BYTES - 1)) != 0) {
            throw new IllegalArgumentException("a dirty log must be a native mapping aligned to 8 bytes, got " + log);
        }
        return new DirtyLog(log);
    }

    /** Pages the log can mark: guest-physical addresses below {@code pages() * 4096}. */
    public long pages() {
        return pages;
    }

    /** Pages a device wrote that lie past the log, so could not be marked. */
    public long missedPages() {
        return (long) MISSED.getVolatile(this);
    }

    /**
     * Marks every page of {@code [gpa, gpa + length)} dirty; nothing for a length of 0. Call after the
     * bytes are written. No allocation.
     */
    public void mark(long gpa, long length) {
        if (length <= 0) {
            return;
        }
        long first = gpa >>> PAGE_SHIFT;
        long last = (gpa + length - 1) >>> PAGE_SHIFT;
        if (last < first) {
            last = -1L >>> PAGE_SHIFT; // the range wraps past 2^64: mark up to the top
        }
        long page = first;
        while (page <= last) {
            if (page >= pages) {
                missed(page, last - page + 1);
                return;
            }
            long word = page >>> 6;
            int from = (int) (page & 63);
            int to = (int) Math.min(63, from + (last - page));
            long mask = (-1L >>> (63 - to + from)) << from;
            WORD.getAndBitwiseOrRelease(log, word * Long.BYTES, mask);
            page += to - from + 1;
        }
    }

    /**
     * Marks the pages of the first {@code bytesWritten} bytes of {@code chain}'s writable part: what a
     * device wrote when it completes the chain with that length. No allocation.
     */
    public void markWritten(io.vring.engine.chain.DescriptorChain chain, long bytesWritten) {
        long remaining = bytesWritten;
        for (int i = chain.readableCount(); i < chain.bufferCount() && remaining > 0; i++) {
            long n = Math.min(remaining, Integer.toUnsignedLong(chain.length(i)));
            mark(chain.guestAddress(i), n);
            remaining -= n;
        }
    }

    /** True if the bit of {@code page} is set (tests and diagnostics). */
    public boolean isDirty(long page) {
        if (page < 0 || page >= pages) {
            return false;
        }
        return ((long) WORD.getAcquire(log, (page >>> 6) * Long.BYTES) & (1L << (page & 63))) != 0;
    }

    private void missed(long page, long count) {
        if ((long) MISSED.getAndAdd(this, count) == 0) {
            LOG.log(System.Logger.Level.WARNING, "dirty log of {0} bytes covers guest-physical addresses below 0x{1};"
                    + " page 0x{2} and others past it were written and cannot be marked (the front-end's log is too small)",
                    log.byteSize(), Long.toHexString(pages * PAGE_SIZE), Long.toHexString(page));
        }
    }

    @Override
    public String toString() {
        return "DirtyLog[" + log.byteSize() + " bytes, " + pages + " pages]";
    }
}
