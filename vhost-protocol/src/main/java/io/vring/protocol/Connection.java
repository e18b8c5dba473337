package io.vring.protocol;

import io.vring.engine.os.Libc;
import io.vring.engine.os.NativeCallException;
import io.vring.protocol.message.FdRule;
import io.vring.protocol.message.MessageHeader;
import io.vring.protocol.message.Payload;
import io.vring.protocol.message.RequestType;
import io.vring.protocol.message.U64Payload;
import org.newsclub.net.unix.AFUNIXSocketAddress;
import org.newsclub.net.unix.AFUNIXSocketChannel;
import org.newsclub.net.unix.BrokenPipeSocketException;
import org.newsclub.net.unix.ConnectionResetSocketException;
import org.newsclub.net.unix.FileDescriptorCast;
import org.newsclub.net.unix.SocketClosedException;

import java.io.FileDescriptor;
import java.io.FileInputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.ClosedChannelException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.ReentrantLock;

/**
 * One vhost-user UNIX stream socket (junixsocket, blocking): sends and receives a header, a payload and
 * up to {@link FdRule#MAX_FDS} fds as SCM_RIGHTS.
 *
 * <p><b>Framing.</b> A message is read as exactly 12 header bytes, then exactly {@code size} payload
 * bytes, so one read never spans two messages. The fds must arrive with the header's bytes (the
 * sender attaches them to the first byte, as QEMU does); fds that turn up with payload bytes are an
 * error. On the send side the whole message goes in one write call, the fds with its first
 * {@code sendmsg} (junixsocket clears its pending fds after that call, so a short write that needs a
 * second call does not send them twice).
 *
 * <p><b>Errors.</b> A peer that closes before a header is {@link VhostUserError#Disconnect}; one that
 * closes inside a message is {@link VhostUserError#PartialMessage}. A header with a bad version,
 * reserved bits or an oversized payload leaves the stream position unknown, so the connection is
 * marked <i>broken</i> and every later call throws {@link VhostUserError#SocketBroken}; a payload is not
 * drained (it may be 4 GiB, and the peer is not trusted). A message whose fds are wrong (more than 8, or
 * some with the payload) is read to its end, its fds closed, and {@link VhostUserError#IncorrectFds}
 * thrown: the stream stays usable and the caller decides whether to drop the peer.
 *
 * <p><b>fds.</b> junixsocket hands received fds out as {@link FileDescriptor}s that it also remembers
 * and closes itself when the socket is closed, whether or not someone else closed them first. To keep
 * that from closing an unrelated fd that reused the number, every received fd is duplicated
 * ({@code F_DUPFD_CLOEXEC}) and junixsocket's copy closed at once through the JDK, which tells
 * junixsocket to forget it. The {@link Message} owns the duplicates. Received fds are close-on-exec.
 * The ancillary buffer is junixsocket's 256-byte minimum: room for 60 fds, so a peer that sends 9 to 60
 * is seen and rejected with every fd closed; beyond 60 the kernel truncates, junixsocket reports an
 * error without handing over the fds that did fit, and those stay open (a hostile-peer leak that only
 * a pure-FFM recvmsg could avoid).
 *
 * <p><b>Threads.</b> One thread may receive while others send: sends are serialised with each other,
 * receives with each other. A request and its reply are matched by order only, so a caller that
 * sends a request and waits for its reply must hold that pairing itself.
 */
public final class Connection implements AutoCloseable {
    /** {@code fcntl} command that duplicates an fd with close-on-exec (Linux). */
    private static final int F_DUPFD_CLOEXEC = 1030;
    /** junixsocket's smallest ancillary buffer (it rounds any request up to this). */
    private static final int ANCILLARY_BUFFER_BYTES = 256;
    private static final int[] NO_FDS = {};

    /** Longest single poll(2) while waiting with a deadline: close() does not wake a poll, so re-check this often. */
    private static final int POLL_SLICE_MILLIS = 100;
    /** {@link #read} without a deadline. */
    private static final long NO_DEADLINE = Long.MIN_VALUE;

    private final AFUNIXSocketChannel channel;
    /** The socket's fd number, for poll(2) and for handing this end over; junixsocket owns it. */
    private final int fd;
    private final ReentrantLock sendLock = new ReentrantLock();
    private final ReentrantLock receiveLock = new ReentrantLock();
    private final ByteBuffer header = ByteBuffer.allocate(MessageHeader.SIZE).order(ByteOrder.LITTLE_ENDIAN);
    private volatile String brokenReason;
    /**
     * For an adopted fd, its {@code /proc/self/fd} target ({@code socket:[inode]}), else null:
     * junixsocket's channel over a cast fd shuts the socket down on close but leaves the fd open,
     * so {@link #close()} closes it if it still names the same socket.
     */
    private volatile String adoptedTarget;

    Connection(AFUNIXSocketChannel channel) throws IOException {
        this.channel = channel;
        channel.configureBlocking(true);
        channel.setAncillaryReceiveBufferSize(ANCILLARY_BUFFER_BYTES);
        this.fd = FileDescriptorCast.using(channel.getFileDescriptor()).as(Integer.class);
    }

    /**
     * Takes over a connected UNIX stream socket fd, e.g. the back-end channel a front-end sent with
     * SET_BACKEND_REQ_FD. The connection owns the fd from here on, also when this fails.
     *
     * @throws VhostUserException SocketError if the fd is not a usable UNIX stream socket
     */
    public static Connection adopt(int fd) {
        AFUNIXSocketChannel channel = null;
        try {
            String target = Files.readSymbolicLink(Path.of("/proc/self/fd/" + fd)).toString();
            channel = FileDescriptorCast.unsafeUsing(fd).as(AFUNIXSocketChannel.class);
            Connection c = new Connection(channel);
            c.adoptedTarget = target;
            return c;
        } catch (IOException | RuntimeException e) {
            if (channel != null) {
                closeQuietly(channel);
            } else {
                closeAll(new int[] {fd});
            }
            throw new VhostUserException(VhostUserError.SocketError, "cannot adopt fd " + fd + " as a socket: " + e, e);
        }
    }

    /** Listens on {@code path} (replacing a stale socket file there). */
    public static Listener listen(Path path) {
        return Listener.bind(path);
    }

    /**
     * Connects to a listening socket at {@code path}.
     *
     * @throws VhostUserException SocketConnect if nobody listens there or we may not connect
     */
    public static Connection connect(Path path) {
        AFUNIXSocketChannel channel = null;
        try {
            channel = AFUNIXSocketChannel.open(AFUNIXSocketAddress.of(path));
            return new Connection(channel);
        } catch (IOException e) {
            closeQuietly(channel);
            throw new VhostUserException(VhostUserError.SocketConnect, "cannot connect to " + path + ": " + e, e);
        }
    }

    /**
     * Two connected ends of a private socket (tests, and a front-end's back-end channel). Made by
     * listening on a socket in a fresh temporary directory, connecting, accepting, and removing both:
     * junixsocket 2.11.1's {@code AFUNIXSocketPair.open()} leaks two fds per pair (it opens two
     * sockets, then overwrites their fds with the socketpair's without closing them).
     */
    public static ConnectionPair pair() {
        Path dir = null;
        try {
            dir = Files.createTempDirectory("vring-pair");
            Path path = dir.resolve("s");
            try (Listener listener = Listener.bind(path)) {
                Connection first = connect(path);
                try {
                    return new ConnectionPair(first, listener.accept());
                } catch (RuntimeException e) {
                    first.close();
                    throw e;
                }
            }
        } catch (IOException e) {
            throw new VhostUserException(VhostUserError.SocketError, "cannot make a socket pair: " + e, e);
        } finally {
            if (dir != null) {
                try {
                    Files.deleteIfExists(dir);
                } catch (IOException ignored) {
                    // A stray empty directory in the temp dir is harmless.
                }
            }
        }
    }

    /**
     * Sends a request of {@code type}: flags {@code 0x1}, or {@code 0x9} with {@code needReply}.
     *
     * @param payload the payload, or null for none
     */
    public void sendRequest(RequestType type, Payload payload, boolean needReply, int... fds) {
        ByteBuffer bytes = payload == null ? ByteBuffer.allocate(0) : payload.encode();
        send(MessageHeader.request(type.code(), bytes.remaining(), needReply), bytes, fds);
    }

    /** Sends the reply to a request of {@code type}: flags exactly {@code 0x5}. */
    public void sendReply(RequestType type, Payload payload, int... fds) {
        ByteBuffer bytes = payload == null ? ByteBuffer.allocate(0) : payload.encode();
        send(MessageHeader.reply(type.code(), bytes.remaining()), bytes, fds);
    }

    /** Sends a REPLY_ACK ack: u64 0 for success, 1 for failure. */
    public void sendAck(RequestType type, boolean success) {
        sendReply(type, new U64Payload(success ? U64Payload.ACK_OK : U64Payload.ACK_FAILED));
    }

    /**
     * Sends one message: a header for {@code request} with {@code flags}, the remaining bytes of
     * {@code payload} (its position is advanced), and {@code fds} (still owned by the caller; the
     * peer gets duplicates).
     *
     * @throws VhostUserException InvalidMessage for bad flags, OversizedMsg for a payload over 4096
     *                            bytes, IncorrectFds for more than 8 fds, a socket kind if the write fails
     */
    public void send(int request, int flags, ByteBuffer payload, int... fds) {
        send(new MessageHeader(request, flags, payload.remaining()), payload, fds);
    }

    private void send(MessageHeader h, ByteBuffer payload, int... fds) {
        h.validate();
        if (fds.length > FdRule.MAX_FDS) {
            throw new VhostUserException(VhostUserError.IncorrectFds,
                    "request " + h.request() + " with " + fds.length + " fds, at most " + FdRule.MAX_FDS);
        }
        ByteBuffer wire = ByteBuffer.allocate(MessageHeader.SIZE + payload.remaining()).order(ByteOrder.LITTLE_ENDIAN);
        h.encode(wire);
        wire.put(payload).flip();
        writeRaw(wire, fds);
    }

    /** Writes {@code wire} as it is, with {@code fds} on the first byte. Tests use it to send malformed messages. */
    void writeRaw(ByteBuffer wire, int... fds) {
        sendLock.lock();
        try {
            requireUsable();
            if (fds.length > 0) {
                FileDescriptor[] descriptors = new FileDescriptor[fds.length];
                for (int i = 0; i < fds.length; i++) {
                    if (fds[i] < 0) {
                        throw new IllegalArgumentException("fd " + fds[i] + " at position " + i);
                    }
                    descriptors[i] = FileDescriptorCast.unsafeUsing(fds[i]).getFileDescriptor();
                }
                channel.setOutboundFileDescriptors(descriptors);
            }
            int start = wire.position();
            try {
                while (wire.hasRemaining()) {
                    channel.write(wire);
                }
            } catch (IOException e) {
                if (wire.position() != start) {
                    markBroken("a write failed after " + (wire.position() - start) + " bytes");
                }
                throw failure("send", e);
            } finally {
                channel.setOutboundFileDescriptors((FileDescriptor[]) null);
            }
        } catch (IOException e) {
            throw failure("send", e);
        } finally {
            sendLock.unlock();
        }
    }

    /**
     * Blocks for the next message. The caller owns the returned message and must close it (which
     * closes the fds it did not take).
     *
     * @throws VhostUserException Disconnect if the peer closed between messages; PartialMessage if it
     *                            closed inside one; InvalidMessage/OversizedMsg for a bad header (the
     *                            connection is then broken); IncorrectFds for fds over the limit or
     *                            after the header; SocketBroken once the connection is broken
     */
    public Message receive() {
        return receiveBefore(NO_DEADLINE);
    }

    /**
     * Like {@link #receive()}, but gives up once {@code timeoutMillis} have passed without a whole
     * message: a request that waits for a reply uses it so a peer that stops answering cannot hang
     * the caller. Closing the connection from another thread wakes the wait within 100 ms.
     *
     * @throws VhostUserException SocketRetry if no byte of a message arrived in time (the stream is
     *                            intact); SocketBroken if a message was cut short by the timeout (the
     *                            connection is then broken); and everything {@link #receive()} throws
     */
    public Message receive(long timeoutMillis) {
        if (timeoutMillis < 0) {
            throw new IllegalArgumentException("timeout " + timeoutMillis + " ms");
        }
        // Capped at about 73 years so the sum cannot overflow.
        long deadline = System.nanoTime() + Math.min(TimeUnit.MILLISECONDS.toNanos(timeoutMillis), Long.MAX_VALUE >> 2);
        return receiveBefore(deadline == NO_DEADLINE ? deadline + 1 : deadline);
    }

    private Message receiveBefore(long deadline) {
        receiveLock.lock();
        int[] fds = NO_FDS;
        boolean handedOver = false;
        try {
            requireUsable();
            header.clear();
            while (header.hasRemaining()) {
                int n = read(header, deadline, 0);
                fds = collectFds(fds);
                if (n < 0) {
                    if (header.position() == 0) {
                        throw new VhostUserException(VhostUserError.Disconnect, "peer closed the connection");
                    }
                    markBroken("peer closed inside a header");
                    throw new VhostUserException(VhostUserError.PartialMessage,
                            "peer closed after " + header.position() + " of " + MessageHeader.SIZE + " header bytes");
                }
            }
            header.flip();
            MessageHeader h;
            try {
                h = MessageHeader.decode(header);
            } catch (VhostUserException e) {
                markBroken(e.getMessage());
                throw e;
            }
            int fdsWithHeader = fds.length;
            ByteBuffer payload = ByteBuffer.allocate(h.size()).order(ByteOrder.LITTLE_ENDIAN);
            while (payload.hasRemaining()) {
                int n = read(payload, deadline, MessageHeader.SIZE);
                fds = collectFds(fds);
                if (n < 0) {
                    markBroken("peer closed inside a payload");
                    throw new VhostUserException(VhostUserError.PartialMessage, "request " + h.request()
                            + ": peer closed after " + payload.position() + " of " + h.size() + " payload bytes");
                }
            }
            if (fds.length != fdsWithHeader) {
                throw new VhostUserException(VhostUserError.IncorrectFds, "request " + h.request() + ": "
                        + (fds.length - fdsWithHeader) + " fds arrived with the payload, not with the header");
            }
            if (fds.length > FdRule.MAX_FDS) {
                throw new VhostUserException(VhostUserError.IncorrectFds,
                        "request " + h.request() + " carried " + fds.length + " fds, at most " + FdRule.MAX_FDS);
            }
            Message m = new Message(h, payload.flip(), fds);
            handedOver = true;
            return m;
        } finally {
            if (!handedOver) {
                closeAll(fds);
            }
            receiveLock.unlock();
        }
    }

    /** True once a framing error or a failed write left the stream unusable. */
    public boolean isBroken() {
        return brokenReason != null;
    }

    /** True while the socket is open. */
    public boolean isOpen() {
        return channel.isOpen();
    }

    /**
     * Closes the socket, shutting it down first (junixsocket always does): a duplicate of the fd
     * elsewhere, e.g. one sent to a peer, sees the connection end too. A thread blocked in {@link #receive()} wakes with
     * {@link VhostUserError#Disconnect}. Fds already received belong to their messages and stay open.
     */
    @Override
    public void close() {
        try {
            channel.close();
        } catch (IOException e) {
            throw new VhostUserException(VhostUserError.SocketError, "close failed: " + e, e);
        } finally {
            closeAdoptedFd();
        }
    }

    private synchronized void closeAdoptedFd() {
        String target = adoptedTarget;
        if (target == null) {
            return;
        }
        adoptedTarget = null;
        try {
            // Same number, same socket: junixsocket did not close it (if it had, the number could
            // now name another file, which must not be closed).
            if (target.equals(Files.readSymbolicLink(Path.of("/proc/self/fd/" + fd)).toString())) {
                Libc.close(fd);
            }
        } catch (IOException | NativeCallException gone) {
            // Closed already.
        }
    }

    @Override
    public String toString() {
        return "Connection[" + channel + (isBroken() ? ", broken: " + brokenReason : "") + "]";
    }

    /**
     * One read into {@code dst}; with a deadline, first waits (poll) until the socket is readable.
     *
     * @param alreadyRead bytes of this message read before {@code dst}, to tell a timeout between
     *                    messages (retryable) from one inside a message (the stream is lost)
     */
    private int read(ByteBuffer dst, long deadline, int alreadyRead) {
        if (deadline != NO_DEADLINE) {
            awaitReadable(deadline, alreadyRead + dst.position());
        }
        try {
            int n;
            do {
                n = channel.read(dst);
            } while (n == 0 && dst.hasRemaining());
            return n;
        } catch (IOException e) {
            throw failure("receive", e);
        }
    }

    private void awaitReadable(long deadline, int bytesOfMessage) {
        for (;;) {
            if (!channel.isOpen()) {
                throw new VhostUserException(VhostUserError.Disconnect, "connection closed while waiting for a message");
            }
            long leftNanos = deadline - System.nanoTime();
            // Poll even when the time is up: bytes that are already there are not late.
            int slice = (int) Math.max(0, Math.min(POLL_SLICE_MILLIS, TimeUnit.NANOSECONDS.toMillis(leftNanos) + 1));
            try {
                if (Libc.poll(fd, Libc.POLLIN, slice) != 0) {
                    return;
                }
            } catch (NativeCallException e) {
                throw new VhostUserException(VhostUserError.Disconnect, "connection closed while waiting for a message", e);
            }
            if (deadline - System.nanoTime() <= 0) {
                if (bytesOfMessage == 0) {
                    throw new VhostUserException(VhostUserError.SocketRetry, "no message arrived in time");
                }
                markBroken("timed out inside a message");
                throw new VhostUserException(VhostUserError.SocketBroken,
                        "timed out after " + bytesOfMessage + " bytes of a message");
            }
        }
    }

    /** The socket's fd: owned by this connection, valid until {@link #close()}; for poll(2) and SCM_RIGHTS. */
    int fd() {
        return fd;
    }

    /**
     * Moves the fds junixsocket received with the last read into our own array as close-on-exec
     * duplicates and closes junixsocket's originals (see the class comment for why).
     */
    private int[] collectFds(int[] fds) {
        FileDescriptor[] received;
        try {
            received = channel.getReceivedFileDescriptors();
        } catch (IOException e) {
            throw failure("receive", e);
        }
        if (received == null || received.length == 0) {
            return fds;
        }
        int[] all = Arrays.copyOf(fds, fds.length + received.length);
        int kept = fds.length;
        RuntimeException failure = null;
        for (FileDescriptor descriptor : received) {
            try {
                int original = FileDescriptorCast.using(descriptor).as(Integer.class);
                all[kept] = Libc.fcntl(original, F_DUPFD_CLOEXEC, 0);
                kept++;
            } catch (IOException | RuntimeException e) {
                failure = failure == null ? new VhostUserException(VhostUserError.SocketError,
                        "cannot take a received fd: " + e, e) : failure;
            } finally {
                forget(descriptor);
            }
        }
        if (failure != null) {
            closeAll(Arrays.copyOf(all, kept));
            throw failure;
        }
        return all;
    }

    /** Closes junixsocket's FileDescriptor through the JDK, which also runs junixsocket's forget hook. */
    private static void forget(FileDescriptor descriptor) {
        try {
            new FileInputStream(descriptor).close();
        } catch (IOException ignored) {
            // The fd is invalid either way afterwards; nothing else to do.
        }
    }

    private static void closeAll(int[] fds) {
        for (int fd : fds) {
            try {
                Libc.close(fd);
            } catch (NativeCallException ignored) {
                // Already failing; a close error cannot make it worse.
            }
        }
    }

    private void requireUsable() {
        String reason = brokenReason;
        if (reason != null) {
            throw new VhostUserException(VhostUserError.SocketBroken, "connection is broken: " + reason);
        }
    }

    private void markBroken(String reason) {
        if (brokenReason == null) {
            brokenReason = reason;
        }
    }

    private VhostUserException failure(String operation, IOException e) {
        VhostUserError kind;
        if (e instanceof ClosedChannelException || e instanceof SocketClosedException) {
            kind = VhostUserError.Disconnect;
        } else if (e instanceof BrokenPipeSocketException || e instanceof ConnectionResetSocketException) {
            kind = VhostUserError.SocketBroken;
        } else {
            kind = VhostUserError.SocketError;
        }
        if (kind == VhostUserError.SocketBroken) {
            markBroken(operation + ": " + e.getMessage());
        }
        return new VhostUserException(kind, operation + " failed: " + e, e);
    }

    private static void closeQuietly(AFUNIXSocketChannel channel) {
        if (channel != null) {
            try {
                channel.close();
            } catch (IOException ignored) {
                // Already failing.
            }
        }
    }
}
