package io.vring.jmh;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;

/**
 * Pins the calling thread to one CPU with {@code sched_setaffinity(0, size, mask)} (pid 0 = the
 * calling thread). {@code taskset} can only place a whole process; a benchmark wants its driver
 * thread and its device thread on different CPUs. Benchmark-only, so it calls libc here rather than
 * through the engine's {@code os.Libc}.
 *
 * <p>A failure (fewer CPUs than asked, a cgroup cpuset that excludes the CPU) is printed and
 * otherwise ignored: the run goes on unpinned and says so.
 */
public final class Affinity {
    /** cpu_set_t of glibc: 1024 bits. */
    private static final long CPU_SET_BYTES = 128;
    private static final MethodHandle SCHED_SETAFFINITY;
    private static final MethodHandle SCHED_GETCPU;

    static {
        Linker linker = Linker.nativeLinker();
        SCHED_SETAFFINITY = linker.downcallHandle(linker.defaultLookup().find("sched_setaffinity").orElseThrow(),
                FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG,
                        ValueLayout.ADDRESS));
        SCHED_GETCPU = linker.downcallHandle(linker.defaultLookup().find("sched_getcpu").orElseThrow(),
                FunctionDescriptor.of(ValueLayout.JAVA_INT));
    }

    /** Pins the calling thread to {@code cpu} and prints the outcome with {@code role}; true if pinned. */
    public static boolean pin(String role, int cpu) {
        if (Boolean.getBoolean("vring.bench.noPin")) {
            System.out.println("# vring: " + role + " thread not pinned (-Dvring.bench.noPin)");
            return false;
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment mask = arena.allocate(CPU_SET_BYTES, 8);
            mask.set(ValueLayout.JAVA_BYTE, cpu / 8, (byte) (1 << (cpu % 8)));
            int rc = (int) SCHED_SETAFFINITY.invokeExact(0, CPU_SET_BYTES, mask);
            if (rc != 0) {
                System.out.println("# vring: could not pin " + role + " thread to CPU " + cpu + " (sched_setaffinity failed)");
                return false;
            }
            System.out.println("# vring: " + role + " thread '" + Thread.currentThread().getName()
                    + "' pinned to CPU " + cpu + " (now on CPU " + currentCpu() + ")");
            return true;
        } catch (Throwable t) {
            System.out.println("# vring: could not pin " + role + " thread to CPU " + cpu + ": " + t);
            return false;
        }
    }

    /** The CPU the calling thread runs on now, or -1. */
    public static int currentCpu() {
        try {
            return (int) SCHED_GETCPU.invokeExact();
        } catch (Throwable t) {
            return -1;
        }
    }

    /** CPU for the driver/producer side of a pair. */
    public static final int DRIVER_CPU = Integer.getInteger("vring.bench.driverCpu", 0);
    /** CPU for the device/consumer side of a pair. */
    public static final int DEVICE_CPU = Integer.getInteger("vring.bench.deviceCpu", 1);

    private Affinity() {
    }
}
