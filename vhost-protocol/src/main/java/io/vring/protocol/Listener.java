package io.vring.protocol;

import io.vring.engine.os.Libc;
import io.vring.engine.os.NativeCallException;
import org.newsclub.net.unix.AFUNIXServerSocketChannel;
import org.newsclub.net.unix.AFUNIXSocketAddress;
import org.newsclub.net.unix.FileDescriptorCast;

import java.io.IOException;
import java.nio.channels.ClosedChannelException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;

/**
 * A listening UNIX socket at a path (the back-end's usual role: QEMU and DPDK virtio-user connect to
 * it). {@link #accept()} blocks for the next peer; {@link #close()} stops listening and unlinks the
 * socket file. A stale socket file left by a previous process is replaced, as the vhost-device daemons
 * do; any other kind of file at the path is an error.
 *
 * <p>{@code accept} waits in poll(2), in slices of 100 ms, and calls junixsocket's accept only once a
 * peer is waiting: closing a junixsocket server socket while a thread is inside its accept leaks one
 * fd per close (an unconnected socket, seen in /proc/net/unix), and {@code close} from another thread
 * is how a server stops.
 */
public final class Listener implements AutoCloseable {
    private static final int POLL_SLICE_MILLIS = 100;

    private final Path path;
    private final AFUNIXServerSocketChannel server;
    private final int fd;

    private Listener(Path path, AFUNIXServerSocketChannel server) throws IOException {
        this.path = path;
        this.server = server;
        this.fd = FileDescriptorCast.using(server.getFileDescriptor()).as(Integer.class);
    }

    static Listener bind(Path path) {
        try {
            if (Files.exists(path, LinkOption.NOFOLLOW_LINKS)) {
                if (Files.isRegularFile(path, LinkOption.NOFOLLOW_LINKS) || Files.isDirectory(path, LinkOption.NOFOLLOW_LINKS)
                        || Files.isSymbolicLink(path)) {
                    throw new VhostUserException(VhostUserError.SocketError,
                            "cannot listen on " + path + ": a file that is not a socket is in the way");
                }
                Files.delete(path);
            }
            AFUNIXServerSocketChannel server = AFUNIXServerSocketChannel.open();
            try {
                server.bind(AFUNIXSocketAddress.of(path));
                server.setDeleteOnClose(true);
                return new Listener(path, server);
            } catch (IOException | RuntimeException e) {
                server.close();
                throw e;
            }
        } catch (IOException e) {
            throw new VhostUserException(VhostUserError.SocketError, "cannot listen on " + path + ": " + e, e);
        }
    }

    /** The socket's path. */
    public Path path() {
        return path;
    }

    /**
     * Waits for the next peer.
     *
     * @throws VhostUserException Disconnect once the listener is closed (also from another thread)
     */
    public Connection accept() {
        try {
            awaitPeer();
            return new Connection(server.accept());
        } catch (ClosedChannelException e) {
            throw new VhostUserException(VhostUserError.Disconnect, "listener on " + path + " is closed", e);
        } catch (IOException e) {
            throw new VhostUserException(VhostUserError.SocketError, "accept on " + path + " failed: " + e, e);
        }
    }

    private void awaitPeer() throws ClosedChannelException {
        for (;;) {
            if (!server.isOpen()) {
                throw new ClosedChannelException();
            }
            try {
                if (Libc.poll(fd, Libc.POLLIN, POLL_SLICE_MILLIS) != 0) {
                    return;
                }
            } catch (NativeCallException e) {
                throw new ClosedChannelException(); // closed (and the number released) between the check and the poll
            }
        }
    }

    /** Stops listening and removes the socket file. Connections already accepted stay open. */
    @Override
    public void close() {
        try {
            server.close();
            Files.deleteIfExists(path);
        } catch (IOException e) {
            throw new VhostUserException(VhostUserError.SocketError, "closing listener on " + path + ": " + e, e);
        }
    }

    @Override
    public String toString() {
        return "Listener[" + path + "]";
    }
}
