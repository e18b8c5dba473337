package io.vring.engine.os;

/**
 * A libc call made through {@link Libc} failed. Carries the call's name and the errno it left, and
 * its message names both with the arguments that matter, e.g.
 * {@code mmap(fd=7, size=4096, offset=0) failed: errno 22 (EINVAL)}.
 *
 * <p>Unchecked: most failures here are set-up or programming errors (a bad fd, no memory) that the
 * caller cannot retry. The conditions a caller is expected to handle, such as {@code EAGAIN} on a
 * non-blocking read or {@code EINTR}, are reported by return value or retried inside {@link Libc}
 * and never arrive as this exception.
 */
public final class NativeCallException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final String call;
    private final int errno;

    /**
     * @param call      the libc function, e.g. "ftruncate"
     * @param arguments the arguments worth showing, e.g. "fd=7, size=4096"
     * @param errno     the errno the call left
     */
    public NativeCallException(String call, String arguments, int errno) {
        super(call + "(" + arguments + ") failed: errno " + errno + " (" + errnoName(errno) + ")");
        this.call = call;
        this.errno = errno;
    }

    /** The libc function that failed. */
    public String call() {
        return call;
    }

    /** The errno it left. */
    public int errno() {
        return errno;
    }

    /** The symbolic name of {@link #errno()}, e.g. "EBADF". */
    public String errnoName() {
        return errnoName(errno);
    }

    /**
     * The symbolic name of a Linux errno value (the generic numbering x86_64 and arm64 share), or
     * "errno N" for one not in this short table of the values these calls produce.
     */
    public static String errnoName(int errno) {
        return switch (errno) {
            case 1 -> "EPERM";
            case 2 -> "ENOENT";
            case 4 -> "EINTR";
            case 5 -> "EIO";
            case 6 -> "ENXIO";
            case 9 -> "EBADF";
            case 11 -> "EAGAIN";
            case 12 -> "ENOMEM";
            case 13 -> "EACCES";
            case 14 -> "EFAULT";
            case 16 -> "EBUSY";
            case 17 -> "EEXIST";
            case 19 -> "ENODEV";
            case 20 -> "ENOTDIR";
            case 21 -> "EISDIR";
            case 22 -> "EINVAL";
            case 23 -> "ENFILE";
            case 24 -> "EMFILE";
            case 27 -> "EFBIG";
            case 28 -> "ENOSPC";
            case 29 -> "ESPIPE";
            case 32 -> "EPIPE";
            case 38 -> "ENOSYS";
            case 75 -> "EOVERFLOW";
            case 88 -> "ENOTSOCK";
            case 90 -> "EMSGSIZE";
            case 91 -> "EPROTOTYPE";
            case 95 -> "EOPNOTSUPP";
            case 104 -> "ECONNRESET";
            case 105 -> "ENOBUFS";
            case 110 -> "ETIMEDOUT";
            case 111 -> "ECONNREFUSED";
            default -> "errno " + errno;
        };
    }
}
