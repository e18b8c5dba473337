package io.vring.backends.vsock.driver;

import io.vring.engine.DriverQueue;
import io.vring.engine.VirtioFeatures;
import io.vring.protocol.FrontendDevice;
import io.vring.protocol.FrontendRing;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.TimeUnit;

/** {@link DriverRings} over a vhost-user front-end: rings 0 and 1 of a started {@link FrontendDevice}. */
final class VhostUserRings implements DriverRings {
    private final FrontendDevice device;
    private final FrontendRing rx;
    private final FrontendRing tx;
    private final int maxIndirect;

    VhostUserRings(FrontendDevice device, int maxIndirect) {
        this.device = device;
        this.rx = device.ring(RX);
        this.tx = device.ring(TX);
        this.maxIndirect = VirtioFeatures.has(device.features(), VirtioFeatures.INDIRECT_DESC) ? maxIndirect : 0;
    }

    private FrontendRing ring(int index) {
        return index == RX ? rx : tx;
    }

    @Override
    public DriverQueue queue(int index) {
        return ring(index).queue();
    }

    @Override
    public MemorySegment data(int index) {
        return ring(index).data();
    }

    @Override
    public long dataGpa(int index) {
        return ring(index).dataGpa();
    }

    @Override
    public void publish(int index) {
        ring(index).publish();
    }

    /** Sleeps on the ring's call eventfd (whole milliseconds: the granularity of its wait). */
    @Override
    public void awaitUsed(int index, long timeoutNanos) {
        ring(index).awaitUsed(Math.max(1, TimeUnit.NANOSECONDS.toMillis(timeoutNanos)));
    }

    @Override
    public long features() {
        return device.features();
    }

    @Override
    public int maxIndirect() {
        return maxIndirect;
    }
}
