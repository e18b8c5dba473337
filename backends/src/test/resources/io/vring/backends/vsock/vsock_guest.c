/*
 * The guest's side of VsockGuestTest, over AF_VSOCK to CID 2 (the host):
 *   vsock_guest connect PORT BYTES SEED   send BYTES of pattern(SEED), half-close, expect them back reversed
 *   vsock_guest refused PORT              connect to a port nobody listens on: must fail at once
 *   vsock_guest listen PORT BYTES SEED    accept one host connection, expect pattern(SEED), answer "thanks"
 * Each prints one result line the test matches.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

static unsigned char pattern(unsigned seed, unsigned i) {
    return (unsigned char)(seed * 31u + i * 7u + (i >> 11));
}

static int write_all(int fd, const unsigned char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static size_t read_all(int fd, unsigned char *p, size_t cap) {
    size_t got = 0;
    ssize_t r;
    while (got < cap && (r = read(fd, p + got, cap - got)) > 0) got += (size_t)r;
    return got;
}

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    unsigned port = (unsigned)strtoul(argv[2], NULL, 10);
    size_t bytes = argc > 3 ? strtoul(argv[3], NULL, 10) : 0;
    unsigned seed = argc > 4 ? (unsigned)strtoul(argv[4], NULL, 10) : 0;
    unsigned char *buf = malloc(bytes + 1), *back = malloc(bytes + 1);
    for (size_t i = 0; i < bytes; i++) buf[i] = pattern(seed, (unsigned)i);
    int s = socket(AF_VSOCK, SOCK_STREAM, 0);
    struct sockaddr_vm a;
    memset(&a, 0, sizeof a);
    a.svm_family = AF_VSOCK;
    a.svm_port = port;
    if (strcmp(argv[1], "connect") == 0 || strcmp(argv[1], "refused") == 0) {
        a.svm_cid = VMADDR_CID_HOST;
        long start = now_ms();
        int rc = connect(s, (struct sockaddr *)&a, sizeof a);
        int err = errno;
        if (strcmp(argv[1], "refused") == 0) {
            printf("REFUSED %s %ld\n", rc == 0 ? "connected" : strerror(err), now_ms() - start);
            return 0;
        }
        if (rc != 0) { printf("CONNECT-FAILED %s\n", strerror(err)); return 1; }
        if (write_all(s, buf, bytes)) { printf("WRITE-FAILED %s\n", strerror(errno)); return 1; }
        shutdown(s, SHUT_WR);
        size_t got = read_all(s, back, bytes + 1);
        int same = got == bytes;
        for (size_t i = 0; same && i < bytes; i++) same = back[i] == buf[bytes - 1 - i];
        printf("ECHO %zu %s\n", got, same ? "reversed" : "WRONG");
        close(s);
        return 0;
    }
    if (strcmp(argv[1], "listen") == 0) {
        a.svm_cid = VMADDR_CID_ANY;
        if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 4)) { printf("LISTEN-FAILED %s\n", strerror(errno)); return 1; }
        printf("LISTENING %u\n", port);
        fflush(stdout);
        int c = accept(s, NULL, NULL);
        if (c < 0) { printf("ACCEPT-FAILED %s\n", strerror(errno)); return 1; }
        size_t got = read_all(c, back, bytes + 1);
        int same = got == bytes && memcmp(back, buf, bytes) == 0;
        write_all(c, (const unsigned char *)"thanks\n", 7);
        close(c);
        printf("RECEIVED %zu %s\n", got, same ? "intact" : "WRONG");
        return 0;
    }
    return 2;
}
