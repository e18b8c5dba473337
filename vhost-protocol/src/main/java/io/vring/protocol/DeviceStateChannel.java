package io.vring.protocol;

import io.vring.engine.os.Libc;
import io.vring.engine.os.NativeCallException;

import java.io.ByteArrayOutputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The device-state transfer of SET_DEVICE_STATE_FD / CHECK_DEVICE_STATE: the front-end hands over
 * one end of a pipe; the back-end writes its state into it (save) or reads a state from it until
 * end of file (load) on a thread of its own, because the front-end reads or writes the other end
 * only after the reply. CHECK_DEVICE_STATE waits for that thread and reports the outcome.
 */
final class DeviceStateChannel implements AutoCloseable {
    /** A state larger than this is refused rather than buffered. */
    static final int MAX_STATE_BYTES = 64 << 20;
    /** How long CHECK_DEVICE_STATE waits for the transfer to end. */
    static final long FINISH_TIMEOUT_SECONDS = 30;
    /** At most PIPE_BUF per write after POLLOUT, so a write on a blocking pipe never blocks. */
    private static final int CHUNK = 4096;
    /** How often a waiting transfer looks at its cancel flag. */
    private static final int POLL_MILLIS = 100;

    private CompletableFuture<byte[]> transfer;
    private Thread thread;
    private volatile boolean cancelled;

    /** Writes {@code state} to {@code fd} (taken) in the background, then closes it. */
    void save(int fd, byte[] state, String name) {
        begin(fd, name + "-state-save", () -> {
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment buf = arena.allocate(Math.max(1, state.length));
                MemorySegment.copy(state, 0, buf, ValueLayout.JAVA_BYTE, 0, state.length);
                long done = 0;
                while (done < state.length) {
                    if (await(fd, Libc.POLLOUT)) {
                        long n = Libc.write(fd, buf.asSlice(done), Math.min(CHUNK, state.length - done));
                        done += Math.max(0, n);
                    }
                }
            }
            return null;
        });
    }

    /** Reads a state from {@code fd} (taken) in the background until end of file. */
    void load(int fd, String name) {
        begin(fd, name + "-state-load", () -> {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment buf = arena.allocate(CHUNK);
                byte[] chunk = new byte[CHUNK];
                while (true) {
                    if (!await(fd, Libc.POLLIN)) {
                        continue;
                    }
                    long n = Libc.read(fd, buf, CHUNK);
                    if (n <= 0) {
                        break;
                    }
                    if (out.size() + n > MAX_STATE_BYTES) {
                        throw new VhostUserException(VhostUserError.InvalidParam, "device state larger than "
                                + MAX_STATE_BYTES + " bytes");
                    }
                    MemorySegment.copy(buf, ValueLayout.JAVA_BYTE, 0, chunk, 0, (int) n);
                    out.write(chunk, 0, (int) n);
                }
            }
            return out.toByteArray();
        });
    }

    /**
     * Waits for the transfer to end and returns the loaded state (null after a save).
     *
     * @throws VhostUserException if there was no transfer, it failed, or it did not end in time
     */
    byte[] finish() {
        if (transfer == null) {
            throw new VhostUserException(VhostUserError.InvalidOperation, "CHECK_DEVICE_STATE without SET_DEVICE_STATE_FD");
        }
        try {
            return transfer.get(FINISH_TIMEOUT_SECONDS, TimeUnit.SECONDS);
        } catch (TimeoutException e) {
            throw new VhostUserException(VhostUserError.BackendInternalError, "device state transfer did not end within "
                    + FINISH_TIMEOUT_SECONDS + " s (the front-end kept its end of the pipe open)");
        } catch (ExecutionException e) {
            throw new VhostUserException(VhostUserError.BackendInternalError, "device state transfer failed: "
                    + e.getCause().getMessage(), e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new VhostUserException(VhostUserError.BackendInternalError, "interrupted waiting for the device state");
        } finally {
            close();
        }
    }

    /** Ends any transfer: the thread gives up at its next poll, closes its fd and ends. */
    @Override
    public void close() {
        Thread t = thread;
        thread = null;
        transfer = null;
        if (t != null) {
            cancelled = true;
            try {
                t.join();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    /** True when {@code fd} is ready for {@code event}; throws once the transfer was cancelled. */
    private boolean await(int fd, int event) {
        if (cancelled) {
            throw new VhostUserException(VhostUserError.Disconnect, "device state transfer cancelled");
        }
        return Libc.poll(fd, event, POLL_MILLIS) != 0;
    }

    private interface Transfer {
        byte[] run() throws NativeCallException;
    }

    private void begin(int fd, String threadName, Transfer work) {
        close();
        cancelled = false;
        CompletableFuture<byte[]> result = new CompletableFuture<>();
        transfer = result;
        thread = Thread.ofPlatform().daemon().name(threadName).start(() -> {
            try {
                result.complete(work.run());
            } catch (RuntimeException e) {
                result.completeExceptionally(e);
            } finally {
                Libc.close(fd); // the peer sees end of file at once after a save
            }
        });
    }
}
