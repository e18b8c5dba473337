package io.vring.protocol;

import io.vring.engine.memory.GuestRegion;
import io.vring.engine.memory.SharedMemory;
import io.vring.protocol.message.MemoryRegion;

import java.lang.foreign.MemorySegment;

/**
 * One region of the guest memory a Java front-end owns: a memfd mapped here, placed at a
 * guest-physical address. Its front-end user address (what vhost-user ring addresses and the
 * region's {@code userspace_addr} are given in) is the address of our own mapping, as for QEMU, so
 * a ring address is always {@code userAddress() + (gpa - guestPhysicalAddress())}.
 */
public final class FrontendRegion implements AutoCloseable {
    private final long guestPhysicalAddress;
    private final SharedMemory memory;

    private FrontendRegion(long guestPhysicalAddress, SharedMemory memory) {
        this.guestPhysicalAddress = guestPhysicalAddress;
        this.memory = memory;
    }

    /** A new zeroed memfd of {@code size} bytes presented at {@code guestPhysicalAddress} (both page-aligned). */
    public static FrontendRegion create(String name, long guestPhysicalAddress, long size) {
        if ((guestPhysicalAddress & 4095) != 0 || (size & 4095) != 0) {
            throw new IllegalArgumentException("region at GPA 0x" + Long.toHexString(guestPhysicalAddress) + " of "
                    + size + " bytes is not page-aligned");
        }
        return new FrontendRegion(guestPhysicalAddress, SharedMemory.create(name, size));
    }

    public long guestPhysicalAddress() {
        return guestPhysicalAddress;
    }

    public long size() {
        return memory.size();
    }

    /** The front-end user address of the first byte: our mapping's address. */
    public long userAddress() {
        return memory.segment().address();
    }

    /** The memfd behind the region (sent with SET_MEM_TABLE / ADD_MEM_REG); owned by the region. */
    public int fd() {
        return memory.fd();
    }

    /** The whole mapping. */
    public MemorySegment segment() {
        return memory.segment();
    }

    /** True if {@code gpa} lies in the region. */
    public boolean contains(long gpa) {
        return Long.compareUnsigned(gpa - guestPhysicalAddress, memory.size()) < 0;
    }

    /** The front-end user address of {@code gpa}, which must lie in the region. */
    public long userAddressOf(long gpa) {
        if (!contains(gpa)) {
            throw new IllegalArgumentException("GPA 0x" + Long.toHexString(gpa) + " is not in " + this);
        }
        return userAddress() + (gpa - guestPhysicalAddress);
    }

    /** The region as vhost-user describes it (mmap offset 0: the region is the whole memfd). */
    public MemoryRegion descriptor() {
        return new MemoryRegion(guestPhysicalAddress, memory.size(), userAddress(), 0);
    }

    /** The region as the engine's guest memory sees it. */
    public GuestRegion guestRegion() {
        return new GuestRegion(guestPhysicalAddress, memory.size(), userAddress(), 0, memory.segment());
    }

    /** Unmaps the region and closes the memfd. Idempotent. */
    @Override
    public void close() {
        memory.close();
    }

    @Override
    public String toString() {
        return "FrontendRegion[gpa=0x" + Long.toHexString(guestPhysicalAddress) + ", size=0x" + Long.toHexString(memory.size())
                + ", fd=" + memory.fd() + "]";
    }
}
