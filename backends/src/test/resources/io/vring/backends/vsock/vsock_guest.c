/* The guest's half of VsockGuestTest: AF_VSOCK traffic whose every byte is checked.
 *
 *   vsock_guest cid
 *       prints "CID <n>", the local CID from IOCTL_VM_SOCKETS_GET_LOCAL_CID on /dev/vsock.
 *   vsock_guest refused <port>
 *       connects to the host (CID 2, or VSOCK_PEER_CID) on a port nobody listens on; prints
 *       "REFUSED <errno> <errno name> <ms>", or "REFUSED-CONNECTED" if the connect succeeded.
 *   vsock_guest seqpacket <port> <messages> <seed>
 *       one SOCK_SEQPACKET connection to the host on <port>, whose program echoes every record:
 *       sends <messages> messages of seeded sizes from 1 byte to 64 KiB (the device's buf_alloc),
 *       each with MSG_EOR, and checks that each comes back as one message of the same length and
 *       bytes, with MSG_EOR and without MSG_TRUNC; then shuts its sending half and expects EOF.
 *       Prints "SEQPACKET-DONE <port> failures=<n> in <ms> ms".
 *   vsock_guest seqrefused <port>
 *       a SOCK_SEQPACKET connect to the host on a port with a stream listener, which must fail at
 *       once; prints "SEQREFUSED <errno> <errno name> <ms>" or "SEQREFUSED-CONNECTED".
 *   vsock_guest connect <port> <conns> <bytes> <reply-bytes> <seed>
 *       <conns> parallel connections to the host on <port>, one process each; to another guest's
 *       CID instead when VSOCK_PEER_CID is set (sibling VMs).
 *   vsock_guest serve <port> <conns> <bytes> <reply-bytes> <seed>
 *       listens on <port>, prints "LISTENING <port>", serves <conns> connections in parallel.
 *   vsock_guest hold <port>
 *       connects to the host on <port>, sends index 0, prints "HOLDING <port>" and returns, leaving
 *       a child process that keeps the connection open (to see what a device reset does to it).
 *   vsock_guest flood <port> <seed>
 *       connects to the host on <port>, sends index 0, then its stream until a write fails (the host
 *       closes its end); prints "FLOOD-ENDED <errno name> after <bytes> in <ms>".
 *   vsock_guest drop <port> <bytes> <seed>
 *       listens on <port>, prints "LISTENING <port>", accepts one host connection, checks its index
 *       and the first <bytes> of its stream, and closes it with more data still coming; prints
 *       "DROPPED <port> after <bytes>".
 *   vsock_guest sink <port> <bytes> <seed>
 *       listens on <port>, prints "LISTENING <port>", accepts one host connection and checks its
 *       stream; returns once <bytes> arrived, leaving a child that goes on reading and checking
 *       until the connection ends, then prints "SINK-ENDED <errno name or EOF> after <bytes>"
 *       (to reset the device while data flows).
 *
 * One connection, either way: the side that connected sends its index (u32 little-endian), then
 * <bytes> of its stream and shuts its sending half down (SHUT_WR); the side that accepted reads to
 * EOF, checking every byte, and only then sends <reply-bytes> of its own stream and closes, so the
 * reply travels after a half-close. The connecting side checks the reply to EOF as well.
 *
 * The stream of (seed, port, index, direction) is, at byte offset o, byte o%8 (little-endian) of
 * splitmix64's finaliser applied to stream_seed + (o/8 + 1) * golden gamma; the Java test
 * (StreamPattern) computes the same bytes. Direction 0 is what the guest sends, 1 what the host sends;
 * between two guests, the connecting one sends direction 0 and the serving one replies with 1.
 *
 * Every process has an alarm: a device that stops moving data fails the run, it never hangs it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (64 * 1024)
#define ALARM_SECONDS 90
#define GUEST_TO_HOST 0
#define HOST_TO_GUEST 1

static const uint64_t GOLDEN = 0x9E3779B97F4A7C15ULL;

/* One whole line per write(2), so lines of parallel processes never interleave on the console. */
static void say(const char *format, ...) {
    char line[512];
    va_list args;
    va_start(args, format);
    int n = vsnprintf(line, sizeof line - 1, format, args);
    va_end(args);
    if (n < 0) {
        return;
    }
    if (n > (int) sizeof line - 2) {
        n = sizeof line - 2;
    }
    line[n++] = '\n';
    if (write(1, line, n) < 0) {
        _exit(3);
    }
}

static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t stream_seed(uint64_t seed, uint32_t port, uint32_t index, int direction) {
    return mix(seed ^ ((uint64_t) port << 32) ^ ((uint64_t) index << 1) ^ (uint64_t) direction);
}

/* The stream's bytes [offset, offset + len). */
static void pattern(uint64_t seed, uint64_t offset, unsigned char *out, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint64_t at = offset + i;
        uint64_t word = mix(seed + (at / 8 + 1) * GOLDEN);
        for (unsigned b = at % 8; b < 8 && i < len; b++, i++) {
            out[i] = (unsigned char) (word >> (8 * b));
        }
    }
}

static long long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long) t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int write_all(int fd, const unsigned char *bytes, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, bytes, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        bytes += n;
        len -= (size_t) n;
    }
    return 0;
}

static int send_stream(int fd, uint64_t seed, uint64_t total, const char *who) {
    static unsigned char buffer[CHUNK];
    for (uint64_t sent = 0; sent < total;) {
        size_t n = total - sent < CHUNK ? (size_t) (total - sent) : CHUNK;
        pattern(seed, sent, buffer, n);
        if (write_all(fd, buffer, n) != 0) {
            say("FAIL %s: write at %llu of %llu: %s", who, (unsigned long long) sent, (unsigned long long) total,
                strerror(errno));
            return -1;
        }
        sent += n;
    }
    return 0;
}

/* Reads to EOF; every byte must be the stream's and there must be exactly <total> of them. */
static int verify_stream(int fd, uint64_t seed, uint64_t total, const char *who) {
    static unsigned char got[CHUNK], want[CHUNK];
    uint64_t received = 0;
    for (;;) {
        ssize_t n = read(fd, got, CHUNK);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            say("FAIL %s: read after %llu of %llu bytes: %s", who, (unsigned long long) received,
                (unsigned long long) total, strerror(errno));
            return -1;
        }
        if (n == 0) {
            break;
        }
        if (received + (uint64_t) n > total) {
            say("FAIL %s: %llu bytes, more than the %llu sent", who, (unsigned long long) (received + n),
                (unsigned long long) total);
            return -1;
        }
        pattern(seed, received, want, (size_t) n);
        if (memcmp(got, want, (size_t) n) != 0) {
            ssize_t at = 0;
            while (got[at] == want[at]) {
                at++;
            }
            say("FAIL %s: byte %llu is 0x%02x, the stream has 0x%02x", who, (unsigned long long) (received + at),
                got[at], want[at]);
            return -1;
        }
        received += (uint64_t) n;
    }
    if (received != total) {
        say("FAIL %s: EOF after %llu of %llu bytes", who, (unsigned long long) received, (unsigned long long) total);
        return -1;
    }
    return 0;
}

static struct sockaddr_vm vsock_address(unsigned cid, unsigned port) {
    struct sockaddr_vm address;
    memset(&address, 0, sizeof address);
    address.svm_family = AF_VSOCK;
    address.svm_cid = cid;
    address.svm_port = port;
    return address;
}

static int print_cid(void) {
    int fd = open("/dev/vsock", O_RDONLY);
    if (fd < 0) {
        say("FAIL open /dev/vsock: %s", strerror(errno));
        return 1;
    }
    unsigned cid = 0;
    if (ioctl(fd, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid) != 0) {
        say("FAIL IOCTL_VM_SOCKETS_GET_LOCAL_CID: %s", strerror(errno));
        return 1;
    }
    close(fd);
    say("CID %u", cid);
    return 0;
}

/* Whom "connect" and "refused" reach: the host, or the guest whose CID VSOCK_PEER_CID names. */
static unsigned peer_cid(void) {
    const char *cid = getenv("VSOCK_PEER_CID");
    return cid == NULL ? VMADDR_CID_HOST : (unsigned) strtoul(cid, NULL, 0);
}

static int refused(unsigned port) {
    int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
    if (fd < 0) {
        say("FAIL socket: %s", strerror(errno));
        return 1;
    }
    struct sockaddr_vm host = vsock_address(peer_cid(), port);
    long long start = now_ms();
    if (connect(fd, (struct sockaddr *) &host, sizeof host) == 0) {
        say("REFUSED-CONNECTED");
        return 1;
    }
    int error = errno;
    say("REFUSED %d %s %lld", error, strerrorname_np(error), now_ms() - start);
    close(fd);
    return 0;
}

#define SEQ_MAX (64 * 1024)

static int seqpacket(unsigned port, unsigned messages, uint64_t seed) {
    static unsigned char out[SEQ_MAX], in[SEQ_MAX + 1];
    long long start = now_ms();
    int fd = socket(AF_VSOCK, SOCK_SEQPACKET, 0);
    struct sockaddr_vm host = vsock_address(VMADDR_CID_HOST, port);
    if (fd < 0 || connect(fd, (struct sockaddr *) &host, sizeof host) != 0) {
        say("FAIL seqpacket %u: connect: %s", port, strerror(errno));
        return 1;
    }
    int failures = 0;
    uint64_t bytes = 0;
    for (unsigned i = 0; i < messages && failures < 5; i++) {
        size_t len = 1 + (size_t) (mix(seed ^ ((uint64_t) port << 32) ^ i) % SEQ_MAX);
        pattern(stream_seed(seed, port, i, GUEST_TO_HOST), 0, out, len);
        ssize_t sent = send(fd, out, len, MSG_EOR);
        if (sent != (ssize_t) len) {
            say("FAIL seqpacket %u: message %u of %zu bytes: send gave %zd: %s", port, i, len, sent, strerror(errno));
            return 1;
        }
        struct iovec iov = {in, sizeof in};
        struct msghdr message;
        memset(&message, 0, sizeof message);
        message.msg_iov = &iov;
        message.msg_iovlen = 1;
        ssize_t got = recvmsg(fd, &message, 0);
        if (got != (ssize_t) len || (message.msg_flags & MSG_TRUNC) || !(message.msg_flags & MSG_EOR)) {
            say("FAIL seqpacket %u: message %u of %zu bytes came back as %zd bytes, flags 0x%x: %s", port, i, len, got,
                message.msg_flags, got < 0 ? strerror(errno) : "");
            failures++;
        } else if (memcmp(in, out, len) != 0) {
            say("FAIL seqpacket %u: message %u of %zu bytes came back with other bytes", port, i, len);
            failures++;
        }
        bytes += len;
    }
    if (shutdown(fd, SHUT_WR) != 0) {
        say("FAIL seqpacket %u: shutdown(SHUT_WR): %s", port, strerror(errno));
        return 1;
    }
    ssize_t end = recv(fd, in, sizeof in, 0);
    if (end != 0) {
        say("FAIL seqpacket %u: expected EOF after the half-close, got %zd: %s", port, end, strerror(errno));
        failures++;
    }
    close(fd);
    say("SEQPACKET-BYTES %u %llu", port, (unsigned long long) bytes);
    say("SEQPACKET-DONE %u failures=%d in %lld ms", port, failures, now_ms() - start);
    return failures == 0 ? 0 : 1;
}

static int seqrefused(unsigned port) {
    int fd = socket(AF_VSOCK, SOCK_SEQPACKET, 0);
    if (fd < 0) {
        say("FAIL socket(SOCK_SEQPACKET): %s", strerror(errno));
        return 1;
    }
    struct sockaddr_vm host = vsock_address(VMADDR_CID_HOST, port);
    long long start = now_ms();
    if (connect(fd, (struct sockaddr *) &host, sizeof host) == 0) {
        say("SEQREFUSED-CONNECTED");
        return 1;
    }
    int error = errno;
    say("SEQREFUSED %d %s %lld", error, strerrorname_np(error), now_ms() - start);
    close(fd);
    return 0;
}

static int connect_one(unsigned port, uint32_t index, uint64_t bytes, uint64_t reply, uint64_t seed) {
    char who[64];
    snprintf(who, sizeof who, "connect %u/%u", port, index);
    long long start = now_ms();
    int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
    struct sockaddr_vm host = vsock_address(peer_cid(), port);
    if (fd < 0 || connect(fd, (struct sockaddr *) &host, sizeof host) != 0) {
        say("FAIL %s: connect: %s", who, strerror(errno));
        return 1;
    }
    unsigned char header[4] = {index, index >> 8, index >> 16, index >> 24};
    if (write_all(fd, header, 4) != 0) {
        say("FAIL %s: writing the index: %s", who, strerror(errno));
        return 1;
    }
    if (send_stream(fd, stream_seed(seed, port, index, GUEST_TO_HOST), bytes, who) != 0) {
        return 1;
    }
    if (shutdown(fd, SHUT_WR) != 0) {
        say("FAIL %s: shutdown(SHUT_WR): %s", who, strerror(errno));
        return 1;
    }
    long long sent = now_ms();
    if (verify_stream(fd, stream_seed(seed, port, index, HOST_TO_GUEST), reply, who) != 0) {
        return 1;
    }
    close(fd);
    say("CONNECTED %u %u sent=%llu in %lld ms, reply=%llu verified", port, index, (unsigned long long) bytes,
        sent - start, (unsigned long long) reply);
    return 0;
}

static int serve_one(int fd, unsigned port, uint64_t bytes, uint64_t reply, uint64_t seed,
                     const struct sockaddr_vm *peer) {
    char who[64];
    snprintf(who, sizeof who, "serve %u from %u:%u", port, peer->svm_cid, peer->svm_port);
    long long start = now_ms();
    unsigned char header[4];
    size_t have = 0;
    while (have < 4) {
        ssize_t n = read(fd, header + have, 4 - have);
        if (n <= 0) {
            say("FAIL %s: reading the index: %s", who, n == 0 ? "EOF" : strerror(errno));
            return 1;
        }
        have += (size_t) n;
    }
    uint32_t index = header[0] | header[1] << 8 | header[2] << 16 | (uint32_t) header[3] << 24;
    /* A sibling guest connected with "connect": it sent direction 0 and expects 1 back. */
    int sibling = peer->svm_cid != VMADDR_CID_HOST;
    if (verify_stream(fd, stream_seed(seed, port, index, sibling ? GUEST_TO_HOST : HOST_TO_GUEST), bytes, who) != 0) {
        return 1;
    }
    long long received = now_ms();
    if (send_stream(fd, stream_seed(seed, port, index, sibling ? HOST_TO_GUEST : GUEST_TO_HOST), reply, who) != 0) {
        return 1;
    }
    close(fd);
    say("SERVED %u %u peer=%u:%u received=%llu in %lld ms, reply=%llu sent", port, index, peer->svm_cid,
        peer->svm_port, (unsigned long long) bytes, received - start, (unsigned long long) reply);
    return 0;
}

static int hold(unsigned port) {
    int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
    struct sockaddr_vm host = vsock_address(VMADDR_CID_HOST, port);
    if (fd < 0 || connect(fd, (struct sockaddr *) &host, sizeof host) != 0) {
        say("FAIL hold %u: connect: %s", port, strerror(errno));
        return 1;
    }
    unsigned char header[4] = {0, 0, 0, 0};
    if (write_all(fd, header, 4) != 0) {
        say("FAIL hold %u: writing the index: %s", port, strerror(errno));
        return 1;
    }
    pid_t child = fork();
    if (child < 0) {
        say("FAIL fork: %s", strerror(errno));
        return 1;
    }
    if (child == 0) {
        alarm(ALARM_SECONDS);
        pause();
        _exit(0);
    }
    say("HOLDING %u", port);
    return 0;
}

static int flood(unsigned port, uint64_t seed) {
    static unsigned char buffer[CHUNK];
    int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
    struct sockaddr_vm host = vsock_address(VMADDR_CID_HOST, port);
    if (fd < 0 || connect(fd, (struct sockaddr *) &host, sizeof host) != 0) {
        say("FAIL flood %u: connect: %s", port, strerror(errno));
        return 1;
    }
    unsigned char header[4] = {0, 0, 0, 0};
    if (write_all(fd, header, 4) != 0) {
        say("FAIL flood %u: writing the index: %s", port, strerror(errno));
        return 1;
    }
    uint64_t stream = stream_seed(seed, port, 0, GUEST_TO_HOST);
    long long start = now_ms();
    for (uint64_t sent = 0;;) {
        pattern(stream, sent, buffer, CHUNK);
        ssize_t n = write(fd, buffer, CHUNK);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            int error = errno;
            say("FLOOD-ENDED %s after %llu in %lld ms", strerrorname_np(error), (unsigned long long) sent,
                now_ms() - start);
            close(fd);
            return 0;
        }
        sent += (uint64_t) n;
    }
}

static int drop(unsigned port, uint64_t bytes, uint64_t seed) {
    static unsigned char got[CHUNK], want[CHUNK];
    int listener = socket(AF_VSOCK, SOCK_STREAM, 0);
    struct sockaddr_vm any = vsock_address(VMADDR_CID_ANY, port);
    if (listener < 0 || bind(listener, (struct sockaddr *) &any, sizeof any) != 0 || listen(listener, 1) != 0) {
        say("FAIL listen on %u: %s", port, strerror(errno));
        return 1;
    }
    say("LISTENING %u", port);
    int fd = accept(listener, NULL, NULL);
    if (fd < 0) {
        say("FAIL accept on %u: %s", port, strerror(errno));
        return 1;
    }
    unsigned char header[4];
    size_t have = 0;
    while (have < 4) {
        ssize_t n = read(fd, header + have, 4 - have);
        if (n <= 0) {
            say("FAIL drop %u: reading the index: %s", port, n == 0 ? "EOF" : strerror(errno));
            return 1;
        }
        have += (size_t) n;
    }
    uint64_t stream = stream_seed(seed, port, header[0], HOST_TO_GUEST);
    for (uint64_t received = 0; received < bytes;) {
        size_t want_now = bytes - received < CHUNK ? (size_t) (bytes - received) : CHUNK;
        ssize_t n = read(fd, got, want_now);
        if (n <= 0) {
            say("FAIL drop %u: read after %llu: %s", port, (unsigned long long) received, n == 0 ? "EOF" : strerror(errno));
            return 1;
        }
        pattern(stream, received, want, (size_t) n);
        if (memcmp(got, want, (size_t) n) != 0) {
            say("FAIL drop %u: the stream differs within bytes %llu..%llu", port, (unsigned long long) received,
                (unsigned long long) (received + n));
            return 1;
        }
        received += (uint64_t) n;
    }
    close(fd);
    close(listener);
    say("DROPPED %u after %llu", port, (unsigned long long) bytes);
    return 0;
}

static int sink(unsigned port, uint64_t bytes, uint64_t seed) {
    static unsigned char got[CHUNK], want[CHUNK];
    int listener = socket(AF_VSOCK, SOCK_STREAM, 0);
    struct sockaddr_vm any = vsock_address(VMADDR_CID_ANY, port);
    if (listener < 0 || bind(listener, (struct sockaddr *) &any, sizeof any) != 0 || listen(listener, 1) != 0) {
        say("FAIL listen on %u: %s", port, strerror(errno));
        return 1;
    }
    say("LISTENING %u", port);
    int fd = accept(listener, NULL, NULL);
    if (fd < 0) {
        say("FAIL accept on %u: %s", port, strerror(errno));
        return 1;
    }
    close(listener);
    unsigned char header[4];
    size_t have = 0;
    while (have < 4) {
        ssize_t n = read(fd, header + have, 4 - have);
        if (n <= 0) {
            say("FAIL sink %u: reading the index: %s", port, n == 0 ? "EOF" : strerror(errno));
            return 1;
        }
        have += (size_t) n;
    }
    uint64_t stream = stream_seed(seed, port, header[0], HOST_TO_GUEST);
    int parent_waits = 1;
    for (uint64_t received = 0;;) {
        if (parent_waits && received >= bytes) {
            pid_t child = fork();
            if (child < 0) {
                say("FAIL fork: %s", strerror(errno));
                return 1;
            }
            if (child > 0) {
                return 0;
            }
            alarm(ALARM_SECONDS);
            parent_waits = 0;
        }
        ssize_t n = read(fd, got, CHUNK);
        if (n <= 0) {
            say("SINK-ENDED %s after %llu", n == 0 ? "EOF" : strerrorname_np(errno), (unsigned long long) received);
            _exit(0);
        }
        pattern(stream, received, want, (size_t) n);
        if (memcmp(got, want, (size_t) n) != 0) {
            say("FAIL sink %u: the stream differs within bytes %llu..%llu", port, (unsigned long long) received,
                (unsigned long long) (received + n));
            _exit(1);
        }
        received += (uint64_t) n;
    }
}

static int wait_children(int children, const char *what, unsigned port, long long start) {
    int failures = 0;
    for (int i = 0; i < children; i++) {
        int status;
        if (wait(&status) < 0) {
            say("FAIL wait: %s", strerror(errno));
            return 1;
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            if (WIFSIGNALED(status)) {
                say("FAIL %s %u: a connection's process died of signal %d (alarm: no progress in %d s)", what, port,
                    WTERMSIG(status), ALARM_SECONDS);
            }
            failures++;
        }
    }
    say("%s-DONE %u failures=%d in %lld ms", what, port, failures, now_ms() - start);
    return failures == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    alarm(ALARM_SECONDS);
    /* A write to a connection the peer reset is an EPIPE to report, not a signal to die of. */
    signal(SIGPIPE, SIG_IGN);
    if (argc == 2 && strcmp(argv[1], "cid") == 0) {
        return print_cid();
    }
    if (argc == 3 && strcmp(argv[1], "refused") == 0) {
        return refused((unsigned) strtoul(argv[2], NULL, 0));
    }
    if (argc == 5 && strcmp(argv[1], "seqpacket") == 0) {
        return seqpacket((unsigned) strtoul(argv[2], NULL, 0), (unsigned) strtoul(argv[3], NULL, 0),
                         strtoull(argv[4], NULL, 0));
    }
    if (argc == 3 && strcmp(argv[1], "seqrefused") == 0) {
        return seqrefused((unsigned) strtoul(argv[2], NULL, 0));
    }
    if (argc == 3 && strcmp(argv[1], "hold") == 0) {
        return hold((unsigned) strtoul(argv[2], NULL, 0));
    }
    if (argc == 4 && strcmp(argv[1], "flood") == 0) {
        return flood((unsigned) strtoul(argv[2], NULL, 0), strtoull(argv[3], NULL, 0));
    }
    if (argc == 5 && strcmp(argv[1], "sink") == 0) {
        return sink((unsigned) strtoul(argv[2], NULL, 0), strtoull(argv[3], NULL, 0), strtoull(argv[4], NULL, 0));
    }
    if (argc == 5 && strcmp(argv[1], "drop") == 0) {
        return drop((unsigned) strtoul(argv[2], NULL, 0), strtoull(argv[3], NULL, 0), strtoull(argv[4], NULL, 0));
    }
    if (argc != 7) {
        fprintf(stderr, "usage: vsock_guest cid | refused PORT | seqpacket PORT MESSAGES SEED | seqrefused PORT | hold PORT | flood PORT SEED | drop|sink PORT BYTES SEED | connect|serve PORT CONNS BYTES REPLY SEED\n");
        return 2;
    }
    unsigned port = (unsigned) strtoul(argv[2], NULL, 0);
    int conns = atoi(argv[3]);
    uint64_t bytes = strtoull(argv[4], NULL, 0);
    uint64_t reply = strtoull(argv[5], NULL, 0);
    uint64_t seed = strtoull(argv[6], NULL, 0);
    long long start = now_ms();
    if (strcmp(argv[1], "connect") == 0) {
        for (int i = 0; i < conns; i++) {
            pid_t child = fork();
            if (child < 0) {
                say("FAIL fork: %s", strerror(errno));
                return 1;
            }
            if (child == 0) {
                alarm(ALARM_SECONDS);
                _exit(connect_one(port, (uint32_t) i, bytes, reply, seed));
            }
        }
        return wait_children(conns, "CONNECT", port, start);
    }
    if (strcmp(argv[1], "serve") == 0) {
        int listener = socket(AF_VSOCK, SOCK_STREAM, 0);
        struct sockaddr_vm any = vsock_address(VMADDR_CID_ANY, port);
        if (listener < 0 || bind(listener, (struct sockaddr *) &any, sizeof any) != 0 || listen(listener, conns) != 0) {
            say("FAIL listen on %u: %s", port, strerror(errno));
            return 1;
        }
        say("LISTENING %u", port);
        for (int i = 0; i < conns; i++) {
            struct sockaddr_vm peer;
            socklen_t length = sizeof peer;
            int fd = accept(listener, (struct sockaddr *) &peer, &length);
            if (fd < 0) {
                say("FAIL accept on %u: %s", port, strerror(errno));
                return 1;
            }
            pid_t child = fork();
            if (child < 0) {
                say("FAIL fork: %s", strerror(errno));
                return 1;
            }
            if (child == 0) {
                close(listener);
                alarm(ALARM_SECONDS);
                _exit(serve_one(fd, port, bytes, reply, seed, &peer));
            }
            close(fd);
        }
        close(listener);
        return wait_children(conns, "SERVE", port, start);
    }
    fprintf(stderr, "unknown command %s\n", argv[1]);
    return 2;
}
