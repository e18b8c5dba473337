package io.vring.protocol;

import io.vring.protocol.message.FrontendRequest;
import io.vring.protocol.message.MessageHeader;
import io.vring.protocol.message.ProtocolFeatures;
import io.vring.protocol.message.U64Payload;
import io.vring.protocol.message.VringState;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A back-end played by a test on one end of {@link Connection#pair()}: it records every message the
 * front-end sends (code, flags, payload bytes, fd count) and answers the way a plain back-end would,
 * unless the test's {@code override} answers first (to send a bad reply, or none).
 */
final class ScriptedBackend implements AutoCloseable {
    /** One message as it arrived. */
    record Seen(int code, int flags, byte[] payload, int fds) {
        String name() {
            return FrontendRequest.of(code).map(Enum::name).orElse("code" + code);
        }

        boolean needReply() {
            return (flags & MessageHeader.NEED_REPLY) != 0;
        }

        ByteBuffer buffer() {
            return ByteBuffer.wrap(payload).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        }

        @Override
        public String toString() {
            return name() + " flags=0x" + Integer.toHexString(flags) + " fds=" + fds + " " + HexFormat.of().formatHex(payload);
        }
    }

    /** What the override decided. */
    enum Action { DEFAULT, HANDLED }

    /** A test's answer to one message, before the default one; may take the message's fds. */
    interface Responder {
        Action answer(Seen seen, Message message, Connection connection);
    }

    final Connection connection;
    final List<Seen> seen = new ArrayList<>();
    volatile long features;
    volatile long protocolFeatures;
    volatile long ackedProtocolFeatures;
    volatile int queues = 4;
    volatile int memSlots = 8;
    private final Responder override;
    private final Thread thread;
    private volatile Throwable failure;

    ScriptedBackend(Connection connection, long features, long protocolFeatures, Responder override) {
        this.connection = connection;
        this.features = features;
        this.protocolFeatures = protocolFeatures;
        this.override = override;
        this.thread = Thread.ofPlatform().daemon().name("scripted-backend").start(this::run);
    }

    private void run() {
        try {
            for (;;) {
                try (Message m = connection.receive()) {
                    byte[] payload = new byte[m.payload().remaining()];
                    m.payload().get(payload);
                    Seen s = new Seen(m.request(), m.header().flags(), payload, m.fdCount());
                    synchronized (seen) {
                        seen.add(s);
                    }
                    if (override.answer(s, m, connection) == Action.DEFAULT) {
                        answer(s);
                    }
                }
            }
        } catch (VhostUserException e) {
            if (e.kind() != VhostUserError.Disconnect) {
                failure = e;
            }
        } catch (Throwable t) {
            failure = t;
        }
    }

    private void answer(Seen s) {
        FrontendRequest type = FrontendRequest.of(s.code()).orElseThrow();
        switch (type) {
            case GET_FEATURES -> connection.sendReply(type, new U64Payload(features));
            case GET_PROTOCOL_FEATURES -> connection.sendReply(type, new U64Payload(protocolFeatures));
            case SET_PROTOCOL_FEATURES -> ackedProtocolFeatures = s.buffer().getLong(0);
            case GET_QUEUE_NUM -> connection.sendReply(type, new U64Payload(queues));
            case GET_MAX_MEM_SLOTS -> connection.sendReply(type, new U64Payload(memSlots));
            case GET_STATUS -> connection.sendReply(type, new U64Payload(0));
            case GET_VRING_BASE -> connection.sendReply(type, new VringState(s.buffer().getInt(0), 7));
            case CHECK_DEVICE_STATE -> connection.sendReply(type, new U64Payload(0));
            default -> {
                if (type.alwaysReplies()) {
                    throw new AssertionError("the scripted back-end has no default answer to " + type);
                }
            }
        }
        if (!type.alwaysReplies() && s.needReply()) {
            connection.sendAck(type, true);
        }
    }

    /** True if REPLY_ACK was set by SET_PROTOCOL_FEATURES. */
    boolean replyAck() {
        return ProtocolFeatures.has(ackedProtocolFeatures, ProtocolFeatures.REPLY_ACK);
    }

    List<Seen> seen() {
        synchronized (seen) {
            return List.copyOf(seen);
        }
    }

    /** Waits (up to 5 s) until {@code count} messages have arrived: requests without a reply are not waited for by the sender. */
    void awaitSeen(int count) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (seen().size() < count && System.nanoTime() < deadline) {
            Thread.sleep(2);
        }
    }

    List<String> names() {
        return seen().stream().map(Seen::name).toList();
    }

    /** The answering thread's failure, if it had one. */
    Throwable failure() {
        return failure;
    }

    @Override
    public void close() throws InterruptedException {
        connection.close();
        thread.join(TimeUnit.SECONDS.toMillis(5));
    }
}
