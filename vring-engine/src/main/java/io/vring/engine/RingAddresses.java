package io.vring.engine;

/**
 * Guest-physical addresses of a virtqueue's three areas (virtio 1.x names).
 *
 * @param descriptorArea descriptor table (split) or descriptor ring (packed); 16-byte aligned
 * @param driverArea     available ring (split, 2-byte aligned) or driver event suppression (packed, 4)
 * @param deviceArea     used ring (split, 4-byte aligned) or device event suppression (packed, 4)
 */
public record RingAddresses(long descriptorArea, long driverArea, long deviceArea) {
}
