package io.vring.backends.vsock.driver;

import java.util.ArrayDeque;

/**
 * A guest port that accepts connections the host opens (a host program's {@code CONNECT <port>} in
 * the hybrid model): each REQUEST to the port is answered with RESPONSE at once and the new stream
 * waits here for {@link #accept}. Up to {@value #BACKLOG} wait; a REQUEST beyond them gets RST.
 */
public final class VsockListener implements AutoCloseable {
    /** Streams that may wait to be accepted. */
    public static final int BACKLOG = 128;

    private final VsockDriver driver;
    private final int port;
    private final int streamBufferSize;
    private final ArrayDeque<VsockStream> pending = new ArrayDeque<>();
    private boolean closed;

    VsockListener(VsockDriver driver, int port, int streamBufferSize) {
        this.driver = driver;
        this.port = port;
        this.streamBufferSize = streamBufferSize;
    }

    public int port() {
        return port;
    }

    /** The next accepted stream, or null if none is waiting now (does not drive the driver). */
    public VsockStream pollAccept() {
        return pending.poll();
    }

    /**
     * The next accepted stream, waiting for one up to {@link VsockDriverConfig#ioTimeout()}.
     *
     * @throws VsockException TIMED_OUT if no host connection came
     */
    public VsockStream accept() throws VsockException {
        long deadline = driver.deadline(driver.config().ioTimeout());
        for (;;) {
            VsockStream stream = pending.poll();
            if (stream != null) {
                return stream;
            }
            if (closed) {
                throw new VsockException(VsockException.Kind.CLOSED, "listener on port " + port + " is closed");
            }
            driver.progress(DriverRings.RX, deadline, "connection to port", port);
        }
    }

    /** A REQUEST to our port from {@code request}'s source. */
    void onRequest(PacketHeader request) throws VsockException {
        if (closed || pending.size() >= BACKLOG) {
            driver.reply(request, VsockPacket.RST);
            return;
        }
        VsockStream stream = driver.adopt(request.type(), port, request.srcPort(), streamBufferSize);
        stream.accepted(request);
        pending.add(stream);
    }

    /** Stops listening; connections not yet accepted are reset. */
    @Override
    public void close() throws VsockException {
        if (closed) {
            return;
        }
        closed = true;
        driver.unlisten(this);
        for (VsockStream stream; (stream = pending.poll()) != null; ) {
            stream.abort();
        }
    }
}
