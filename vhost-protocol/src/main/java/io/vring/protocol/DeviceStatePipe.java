package io.vring.protocol;

import io.vring.engine.os.Libc;
import io.vring.engine.os.NativeCallException;
import io.vring.protocol.message.DeviceStateTransfer;

import java.io.ByteArrayOutputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The front-end's side of one DEVICE_STATE transfer: a pipe whose other end goes to the back-end with
 * SET_DEVICE_STATE_FD (or the fd the back-end hands back instead), read to EOF for a save, written
 * and closed for a load.
 *
 * <p>The pipe is enlarged to 1 MiB (F_SETPIPE_SZ, best effort): a back-end that writes its whole state
 * before replying to SET_DEVICE_STATE_FD, instead of from another thread, then does not block on a
 * full pipe that we only start reading after the reply. Each read or write waits at most the
 * client's reply timeout for progress; a state over {@link #MAX_STATE_BYTES} is refused.
 */
final class DeviceStatePipe implements AutoCloseable {
    /** The largest state accepted from a back-end (the peer is not trusted with our heap). */
    static final int MAX_STATE_BYTES = 64 << 20;
    /** fcntl F_SETPIPE_SZ (Linux). */
    private static final int F_SETPIPE_SZ = 1031;
    private static final int PIPE_BYTES = 1 << 20;
    private static final int CHUNK = 64 << 10;

    private final int direction;
    private final long timeoutMillis;
    /** Our end: the read end for a save, the write end for a load; -1 once closed. */
    private int ours;
    /** The end for the back-end; -1 once handed over and closed here. */
    private int theirs;

    private DeviceStatePipe(int direction, int ours, int theirs, long timeoutMillis) {
        this.direction = direction;
        this.ours = ours;
        this.theirs = theirs;
        this.timeoutMillis = timeoutMillis;
    }

    static DeviceStatePipe open(int direction, long timeoutMillis) {
        int[] fds = Libc.pipe2(Libc.O_CLOEXEC);
        try {
            Libc.fcntl(fds[0], F_SETPIPE_SZ, PIPE_BYTES);
        } catch (NativeCallException e) {
            // Above /proc/sys/fs/pipe-max-size or not permitted: the default 64 KiB still works for a
            // back-end that writes from another thread, as QEMU expects.
        }
        boolean save = direction == DeviceStateTransfer.SAVE;
        return new DeviceStatePipe(direction, save ? fds[0] : fds[1], save ? fds[1] : fds[0], timeoutMillis);
    }

    /** SET_DEVICE_STATE_FD with the back-end's end, then drops our copy of it (so EOF can happen). */
    void start(BackendClient client) {
        int chosen = client.setDeviceStateFd(direction, theirs);
        closeTheirs();
        if (chosen >= 0) {
            closeOurs();
            ours = chosen;
        }
    }

    /** Reads the back-end's state until it closes its end. */
    byte[] readAll() {
        ByteArrayOutputStream state = new ByteArrayOutputStream();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buffer = arena.allocate(CHUNK);
            byte[] chunk = new byte[CHUNK];
            for (;;) {
                awaitReady(Libc.POLLIN, "the back-end's state");
                long n = Libc.read(ours, buffer, CHUNK);
                if (n == 0) {
                    return state.toByteArray();
                }
                if (n > 0) {
                    if (state.size() + n > MAX_STATE_BYTES) {
                        throw new VhostUserException(VhostUserError.InvalidParam,
                                "back-end state exceeds " + MAX_STATE_BYTES + " bytes");
                    }
                    MemorySegment.copy(buffer, ValueLayout.JAVA_BYTE, 0, chunk, 0, (int) n);
                    state.write(chunk, 0, (int) n);
                }
            }
        }
    }

    /** Writes {@code state} and closes our end: EOF tells the back-end the state is complete. */
    void writeAll(byte[] state) {
        Libc.fcntl(ours, Libc.F_SETFL, Libc.fcntl(ours, Libc.F_GETFL, 0) | Libc.O_NONBLOCK);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buffer = arena.allocate(Math.max(1, Math.min(CHUNK, state.length)));
            int done = 0;
            while (done < state.length) {
                int len = (int) Math.min(buffer.byteSize(), state.length - done);
                MemorySegment.copy(state, done, buffer, ValueLayout.JAVA_BYTE, 0, len);
                awaitReady(Libc.POLLOUT, "room in the state pipe");
                long n;
                try {
                    n = Libc.write(ours, buffer, len);
                } catch (NativeCallException e) {
                    throw new VhostUserException(VhostUserError.BackendInternalError,
                            "back-end closed the state pipe after " + done + " of " + state.length + " bytes", e);
                }
                if (n > 0) {
                    done += (int) n;
                }
            }
        }
        closeOurs();
    }

    private void awaitReady(int events, String what) {
        int revents = Libc.poll(ours, events, (int) Math.min(Integer.MAX_VALUE, timeoutMillis));
        if (revents == 0) {
            throw new VhostUserException(VhostUserError.BackendInternalError,
                    "waited " + timeoutMillis + " ms for " + what);
        }
    }

    private void closeOurs() {
        if (ours >= 0) {
            int fd = ours;
            ours = -1;
            Libc.close(fd);
        }
    }

    private void closeTheirs() {
        if (theirs >= 0) {
            int fd = theirs;
            theirs = -1;
            Libc.close(fd);
        }
    }

    @Override
    public void close() {
        try {
            closeOurs();
        } finally {
            closeTheirs();
        }
    }
}
