package io.vring.protocol;

import org.newsclub.net.unix.AFUNIXServerSocketChannel;
import org.newsclub.net.unix.AFUNIXSocketAddress;

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
 */
public final class Listener implements AutoCloseable {
    private final Path path;
    private final AFUNIXServerSocketChannel server;

    private Listener(Path path, AFUNIXServerSocketChannel server) {
        this.path = path;
        this.server = server;
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
            return new Connection(server.accept());
        } catch (ClosedChannelException e) {
            throw new VhostUserException(VhostUserError.Disconnect, "listener on " + path + " is closed", e);
        } catch (IOException e) {
            throw new VhostUserException(VhostUserError.SocketError, "accept on " + path + " failed: " + e, e);
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
