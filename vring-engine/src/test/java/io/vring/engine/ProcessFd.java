package io.vring.engine;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;

import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * Duplicates another process's fd into this one with {@code pidfd_open} + {@code pidfd_getfd}
 * (Linux 5.6+): the same open file, as if passed over a socket. Needed for eventfds, which
 * {@code /proc/<pid>/fd/<n>} cannot reopen (anonymous inodes answer ENXIO). Needs ptrace access to
 * the other process (same user; Yama ptrace_scope may allow ancestors only).
 */
final class ProcessFd {
    private static final long SYS_PIDFD_OPEN = 434;   // the same number on x86_64 and aarch64
    private static final long SYS_PIDFD_GETFD = 438;
    private static final Linker LINKER = Linker.nativeLinker();
    private static final StructLayout CAPTURE = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO = CAPTURE.varHandle(MemoryLayout.PathElement.groupElement("errno"));
    /** long syscall(long number, ...): every argument passed as a variadic long. */
    private static final MethodHandle SYSCALL = LINKER.downcallHandle(
            LINKER.defaultLookup().find("syscall").orElseThrow(),
            FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG),
            Linker.Option.firstVariadicArg(1), Linker.Option.captureCallState("errno"));

    /** A new fd (close-on-exec) in this process for {@code fd} of process {@code pid}. */
    static int duplicate(long pid, int fd) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment capture = arena.allocate(CAPTURE);
            long pidfd = (long) SYSCALL.invokeExact(capture, SYS_PIDFD_OPEN, pid, 0L, 0L);
            if (pidfd < 0) {
                throw new IllegalStateException("pidfd_open(" + pid + ") failed, errno " + (int) ERRNO.get(capture, 0L));
            }
            long copy = (long) SYSCALL.invokeExact(capture, SYS_PIDFD_GETFD, pidfd, (long) fd, 0L);
            int errno = (int) ERRNO.get(capture, 0L);
            io.vring.engine.os.Libc.close((int) pidfd);
            if (copy < 0) {
                throw new IllegalStateException("pidfd_getfd(pid " + pid + ", fd " + fd + ") failed, errno " + errno);
            }
            return (int) copy;
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException(t);
        }
    }

    private ProcessFd() {
    }
}
