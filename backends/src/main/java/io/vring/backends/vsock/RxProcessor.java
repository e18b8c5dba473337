package io.vring.backends.vsock;

import io.vring.engine.DeviceQueue;
import io.vring.engine.chain.ChainWriter;
import io.vring.engine.chain.DescriptorChain;
import io.vring.engine.os.Libc;
import io.vring.engine.os.NativeCallException;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;

import static io.vring.backends.vsock.VsockHeader.*;

/**
 * The rx ring's side of the device: fills the guest's buffers with queued RSTs first, then with one
 * packet per waiting connection in turn (REQUEST, RESPONSE, data, SHUTDOWN, CREDIT_UPDATE,
 * CREDIT_REQUEST), taking turns with packets other guests sent ({@link SiblingInbox}). Data is read
 * from the host socket straight into the packet, never more than the guest's credit or the buffer
 * holds. Runs on the rx ring's worker thread, under the table's lock.
 *
 * <p>A chain is only taken from the ring when there is something to send. If the one packet it was
 * taken for turns out to have no bytes (the host socket had nothing after all), the chain is kept for
 * the next packet; the queue's flyweight stays valid because nothing polls the ring meanwhile.
 */
final class RxProcessor {
    private static final int BATCH = 64;

    private final ConnectionTable table;
    private final SiblingInbox inbox;
    private final long guestCid;
    private final VsockHeader header = new VsockHeader();
    private final ChainWriter writer = new ChainWriter();
    private final ByteBuffer staging = ByteBuffer.allocateDirect(MAX_PAYLOAD);
    private final MemorySegment stagingSegment = MemorySegment.ofBuffer(staging);
    private final int[] reset = new int[3];
    private DescriptorChain held;
    /** Whose turn it is when both the host side and the inbox have packets. */
    private boolean inboxFirst;

    RxProcessor(ConnectionTable table, SiblingInbox inbox, long guestCid) {
        this.table = table;
        this.inbox = inbox;
        this.guestCid = guestCid;
    }

    int process(DeviceQueue queue) {
        int done = 0;
        synchronized (table.lock) {
            while (done < BATCH) {
                if (held == null) {
                    if (!table.rxHasWork() && inbox.isEmpty()) {
                        break;
                    }
                    DescriptorChain chain = queue.poll();
                    if (chain == null) {
                        break;
                    }
                    if (chain.writableBytes() < SIZE) {
                        table.stats.malformed++;
                        table.warnings.warn("rx chain with " + chain.writableBytes()
                                + " writable bytes cannot hold a header; returned empty");
                        queue.addUsed(chain, 0);
                        done++;
                        continue;
                    }
                    held = chain;
                }
                int used = fill(held);
                if (used == 0) {
                    break;
                }
                queue.addUsed(held, used);
                held = null;
                done++;
            }
        }
        return done;
    }

    /**
     * The ring stops: a chain kept for a packet goes back used and empty (Linux drops an rx entry
     * shorter than a header and posts a new buffer), so it is not lost from the ring.
     */
    void stop(DeviceQueue queue) {
        if (held != null) {
            queue.addUsed(held, 0);
            held = null;
        }
    }

    /** A new queue starts: nothing polled from an earlier one is valid. */
    void forget() {
        held = null;
    }

    private int fill(DescriptorChain chain) {
        writer.reset(chain);
        if (table.hasReset()) {
            table.takeReset(reset);
            header.set(guestCid, reset[0], reset[1], 0, reset[2], OP_RST, 0, 0, 0);
            writer.write(header.bytes(), 0, SIZE);
            return SIZE;
        }
        inboxFirst = !inboxFirst;
        if (inboxFirst) {
            int used = inbox.take(writer);
            if (used > 0) {
                return used;
            }
        }
        for (int turns = table.rxWaitingCount(); turns > 0; turns--) {
            VsockConnection connection = table.pollRx();
            if (connection == null) {
                break;
            }
            int used = connection.state == VsockConnection.State.CLOSED ? 0 : fillFor(connection);
            table.offerRx(connection);
            if (used > 0) {
                return used;
            }
            if (table.hasReset()) {
                // A read just failed and reset the connection: its RST is the packet.
                return fill(chain);
            }
        }
        return inboxFirst ? 0 : inbox.take(writer);
    }

    private int fillFor(VsockConnection connection) {
        if ((connection.pending & VsockConnection.SEND_REQUEST) != 0) {
            connection.pending &= ~VsockConnection.SEND_REQUEST;
            return packet(connection, OP_REQUEST, 0, 0);
        }
        if ((connection.pending & VsockConnection.SEND_RESPONSE) != 0) {
            connection.pending &= ~VsockConnection.SEND_RESPONSE;
            return packet(connection, OP_RESPONSE, 0, 0);
        }
        if (connection.hostDataWaiting()) {
            int used = connection.seqpacket() ? record(connection) : data(connection);
            if (used > 0 || connection.state == VsockConnection.State.CLOSED) {
                return used;
            }
        }
        if ((connection.pending & VsockConnection.SEND_SHUTDOWN) != 0) {
            connection.pending &= ~VsockConnection.SEND_SHUTDOWN;
            return packet(connection, OP_SHUTDOWN, 0, connection.shutdownFlags);
        }
        if ((connection.pending & VsockConnection.SEND_CREDIT_UPDATE) != 0) {
            return packet(connection, OP_CREDIT_UPDATE, 0, 0);
        }
        if ((connection.pending & VsockConnection.SEND_CREDIT_REQUEST) != 0) {
            connection.pending &= ~VsockConnection.SEND_CREDIT_REQUEST;
            return packet(connection, OP_CREDIT_REQUEST, 0, 0);
        }
        return 0;
    }

    /** Host bytes into one RW packet, within the guest's credit and the buffer; 0 if none were there. */
    private int data(VsockConnection connection) {
        long credit = creditOrStall(connection);
        if (credit == 0) {
            return 0;
        }
        int room = (int) Math.min(Math.min(credit, writer.remaining() - SIZE), MAX_PAYLOAD);
        if (room <= 0) {
            return 0;
        }
        int n;
        if (connection.hasReadAhead()) {
            n = Math.min(room, connection.readAhead.length - connection.readAheadPos);
            MemorySegment.copy(connection.readAhead, connection.readAheadPos, stagingSegment,
                    ValueLayout.JAVA_BYTE, 0, n);
            connection.readAheadPos += n;
        } else {
            staging.clear().limit(room);
            try {
                n = connection.host.read(staging);
            } catch (IOException e) {
                table.reset(connection, "reading the host socket: " + e);
                return 0;
            }
            if (n == 0) {
                connection.hostReadable = false;
                table.interest(connection, connection.interest | SelectionKey.OP_READ, false);
                return 0;
            }
            if (n < 0) {
                hostEof(connection);
                return 0;
            }
        }
        packet(connection, OP_RW, n, 0);
        writer.write(stagingSegment, 0, n);
        connection.txCnt += n;
        table.stats.bytesHostToGuest += n;
        return SIZE + n;
    }

    /**
     * The guest's free buffer space for this connection. At 0 the connection stalls: the first time,
     * a CREDIT_REQUEST is queued for the guest (once per stall, not per attempt).
     */
    private long creditOrStall(VsockConnection connection) {
        long credit = connection.peerFree();
        if (credit == 0 && !connection.stalled) {
            connection.stalled = true;
            connection.pending |= VsockConnection.SEND_CREDIT_REQUEST;
            table.stats.creditStalls++;
        }
        return credit;
    }

    /** Host half-closed (or closed): the guest reads EOF and may still send, as over TCP. */
    private void hostEof(VsockConnection connection) {
        connection.hostReadable = false;
        connection.hostEof = true;
        connection.shutdownFlags |= SHUTDOWN_SEND;
        connection.pending |= VsockConnection.SEND_SHUTDOWN;
        table.interest(connection, connection.interest & ~SelectionKey.OP_READ, false);
        table.closeIfFinished(connection);
    }

    /**
     * The next piece of a host record (SEQPACKET) in one RW packet, within the guest's credit and the
     * buffer; the last piece carries EOM and EOR (a host record is a whole message and a whole
     * record: AF_UNIX has no second kind of boundary). A record is read whole, only once the one
     * before it is all sent. 0 if nothing could be sent.
     */
    private int record(VsockConnection connection) {
        long credit = creditOrStall(connection);
        if (credit == 0) {
            return 0;
        }
        if (!connection.recordPending() && !readRecord(connection)) {
            return 0;
        }
        int left = connection.recordLength - connection.recordSent;
        int n = (int) Math.min(Math.min(credit, writer.remaining() - SIZE), Math.min(MAX_PAYLOAD, left));
        if (n <= 0) {
            return 0;
        }
        boolean last = n == left;
        packet(connection, OP_RW, n, last ? SEQ_EOM | SEQ_EOR : 0);
        writer.write(connection.record, connection.recordSent, n);
        connection.txCnt += n;
        table.stats.bytesHostToGuest += n;
        if (last) {
            connection.recordLength = 0;
            connection.recordSent = 0;
            table.stats.messagesHostToGuest++;
        } else {
            connection.recordSent += n;
        }
        return SIZE + n;
    }

    /** Reads the host's next record into the connection; false if there was none to send (or it reset). */
    private boolean readRecord(VsockConnection connection) {
        MemorySegment buffer = connection.recordBuffer(VsockConnection.MAX_HOST_RECORD);
        long n;
        try {
            n = Libc.recv(connection.fd, buffer, 0, buffer.byteSize(), Libc.MSG_DONTWAIT | Libc.MSG_TRUNC);
        } catch (NativeCallException e) {
            table.reset(connection, "reading the host socket: " + e.getMessage());
            return false;
        }
        if (n < 0) {
            connection.hostReadable = false;
            table.interest(connection, connection.interest | SelectionKey.OP_READ, false);
            return false;
        }
        if (n == 0) {
            emptyRecordOrEof(connection, buffer);
            return false;
        }
        if (n > VsockConnection.MAX_HOST_RECORD) {
            table.warnings.warn(connection.name() + ": a host record of " + n + " bytes is longer than the "
                    + VsockConnection.MAX_HOST_RECORD + " the device takes; RST");
            table.reset(connection, "host record too long");
            return false;
        }
        if (n > Integer.toUnsignedLong(connection.peerBufAlloc)) {
            // The guest reads a message only once it is whole, and never has room for this one.
            table.warnings.warn(connection.name() + ": a host record of " + n + " bytes is longer than the guest's"
                    + " buf_alloc " + Integer.toUnsignedString(connection.peerBufAlloc) + "; RST");
            table.reset(connection, "host record larger than the guest's buffer");
            return false;
        }
        connection.recordLength = (int) n;
        connection.recordSent = 0;
        return true;
    }

    /**
     * recv gave 0: end of file, or a record of no bytes, which a guest message cannot be (it is
     * dropped). A peek tells them apart: at end of file it gives 0 again; an empty record is followed
     * by more records or by nothing yet (EAGAIN). Two empty records in a row read as end of file.
     */
    private void emptyRecordOrEof(VsockConnection connection, MemorySegment buffer) {
        long next;
        try {
            next = Libc.recv(connection.fd, buffer, 0, 1, Libc.MSG_DONTWAIT | Libc.MSG_PEEK);
        } catch (NativeCallException e) {
            table.reset(connection, "reading the host socket: " + e.getMessage());
            return;
        }
        if (next == 0) {
            hostEof(connection);
        } else {
            table.stats.dropped++;
            table.warnings.warn(connection.name() + ": the host sent an empty record; dropped");
        }
    }

    /** Writes a header of the connection (its credit included) and returns the header's size; the payload follows. */
    private int packet(VsockConnection connection, int op, int len, int flags) {
        header.set(guestCid, connection.localPort, connection.peerPort, len, connection.type, op, flags,
                connection.bufAlloc, connection.fwdCnt);
        writer.write(header.bytes(), 0, SIZE);
        // Every packet carries the credit, so an update still queued has nothing left to say.
        connection.lastSentFwdCnt = connection.fwdCnt;
        connection.pending &= ~VsockConnection.SEND_CREDIT_UPDATE;
        return SIZE;
    }
}
