package io.vring.engine;

/**
 * Where a driver places one queue in a block of guest memory it owns: the three ring areas, an
 * optional indirect area, then a data area for buffers, each page-aligned.
 *
 * @param rings      the three ring areas
 * @param indirect   the indirect area, or null when {@code maxIndirect} was 0
 * @param dataGpa    first GPA of the data area
 * @param dataBytes  bytes in the data area
 * @param totalBytes bytes from {@code baseGpa} to the end of the data area
 */
public record RingPlacement(RingAddresses rings, IndirectArea indirect, long dataGpa, long dataBytes, long totalBytes) {
    private static final long PAGE = 4096;

    /** Lays out a queue of {@code size} of {@code kind} from {@code baseGpa} (page-aligned). */
    public static RingPlacement plan(RingKind kind, int size, long baseGpa, int maxIndirect, long dataBytes) {
        if ((baseGpa & (PAGE - 1)) != 0) {
            throw new IllegalArgumentException("base GPA 0x" + Long.toHexString(baseGpa) + " is not page-aligned");
        }
        long desc = baseGpa;
        long driver = desc + pageAlign(kind.descriptorAreaSize(size));
        long device = driver + pageAlign(kind.driverAreaSize(size));
        long indirectGpa = device + pageAlign(kind.deviceAreaSize(size));
        IndirectArea indirect = maxIndirect > 0 ? new IndirectArea(indirectGpa, maxIndirect) : null;
        long data = indirectGpa + (indirect == null ? 0 : pageAlign(indirect.bytesFor(size)));
        long end = data + pageAlign(dataBytes);
        return new RingPlacement(new RingAddresses(desc, driver, device), indirect, data, dataBytes, end - baseGpa);
    }

    private static long pageAlign(long bytes) {
        return (bytes + PAGE - 1) & -PAGE;
    }
}
