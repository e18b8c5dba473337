/*
 * The guest side of BlkGuestKillTest: writers that keep a disk busy while the host kills and
 * restarts its back-end, and check afterwards that every byte is what they wrote.
 *
 * usage: blk_kill_guest DEVICE SEED THREADS REGION_BYTES REQUEST_BYTES DEPTH PASSES
 *
 * Thread t owns [t*REGION, (t+1)*REGION). Each pass writes the whole region with that pass's
 * pattern, then reads it all back and compares, DEPTH requests of REQUEST bytes in flight at once
 * (Linux AIO on an O_DIRECT descriptor, so each request goes to the device as it is). A pattern
 * word depends on the seed, the pass and its offset: a lost write, a write replayed from an
 * earlier pass, or a read from the wrong place all show as a wrong word.
 *
 * Prints "BLKKILL-PROGRESS thread T pass P" after each pass of each thread, a line for each error,
 * and at the end one line:
 *   BLKKILL-RESULT errors E mismatches M stalls S written W read R ms T
 * The exit status is 0 only if E, M and S are all 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/aio_abi.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_DEPTH 64
/* A request that takes longer than this means the device is gone for good. */
#define STALL_SECONDS 60

static const char *device;
static uint64_t seed;
static long threads, region, request, depth, passes;

struct worker {
    long index;
    long errors, mismatches, stalls;
    uint64_t written, read;
};

static uint64_t word(uint64_t pass, uint64_t offset) {
    /* splitmix64 of (seed, pass, word index); BlkGuestKillTest computes the same. */
    uint64_t z = seed + pass * 0x9E3779B97F4A7C15ULL + (offset / 8) * 0xD1B54A32D192ED03ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void fill(uint64_t *buffer, uint64_t pass, uint64_t offset) {
    for (long i = 0; i < request / 8; i++) {
        buffer[i] = word(pass, offset + (uint64_t) i * 8);
    }
}

/* Counts the wrong words of a read; reports the first one, and whether it is an earlier pass's. */
static long verify(const uint64_t *buffer, long thread, uint64_t pass, uint64_t offset) {
    long wrong = 0;
    for (long i = 0; i < request / 8; i++) {
        uint64_t at = offset + (uint64_t) i * 8;
        uint64_t expected = word(pass, at);
        if (buffer[i] != expected) {
            if (wrong == 0) {
                const char *what = pass > 0 && buffer[i] == word(pass - 1, at) ? "the previous pass's word"
                        : buffer[i] == 0 ? "zero" : "unknown";
                dprintf(1, "BLKKILL-MISMATCH thread %ld pass %" PRIu64 " offset %" PRIu64
                        " expected %016" PRIx64 " got %016" PRIx64 " (%s)\n",
                        thread, pass, at, expected, buffer[i], what);
            }
            wrong++;
        }
    }
    return wrong;
}

/* Puts chunk `chunk` of the region in flight in slot `slot`: its pattern, or poison to read over. */
static int submit(struct worker *w, aio_context_t ctx, int fd, struct iocb *cb, uint64_t *buffer, long slot,
                  long chunk, int writing, uint64_t pass) {
    uint64_t offset = (uint64_t) w->index * (uint64_t) region + (uint64_t) chunk * (uint64_t) request;
    if (writing) {
        fill(buffer, pass, offset);
    } else {
        memset(buffer, 0xA5, request);
    }
    memset(cb, 0, sizeof *cb);
    cb->aio_data = ((uint64_t) slot << 32) | (uint64_t) chunk;
    cb->aio_lio_opcode = writing ? IOCB_CMD_PWRITE : IOCB_CMD_PREAD;
    cb->aio_fildes = fd;
    cb->aio_buf = (uint64_t) (uintptr_t) buffer;
    cb->aio_nbytes = request;
    cb->aio_offset = offset;
    struct iocb *list[1] = {cb};
    if (syscall(SYS_io_submit, ctx, 1, list) != 1) {
        dprintf(1, "BLKKILL-ERROR thread %ld io_submit: %s\n", w->index, strerror(errno));
        w->errors++;
        return -1;
    }
    return 0;
}

/* One phase (write or read) of one pass over the thread's region, depth requests in flight. */
static int phase(struct worker *w, aio_context_t ctx, int fd, uint64_t **buffers, int writing, uint64_t pass) {
    long chunks = region / request;
    struct iocb iocbs[MAX_DEPTH];
    struct io_event events[MAX_DEPTH];
    long next = 0, done = 0, inflight = 0;
    for (; next < depth && next < chunks; next++, inflight++) {
        if (submit(w, ctx, fd, &iocbs[next], buffers[next], next, next, writing, pass) != 0) {
            return -1;
        }
    }
    while (done < chunks) {
        struct timespec timeout = {STALL_SECONDS, 0};
        long n = syscall(SYS_io_getevents, ctx, 1, MAX_DEPTH, events, &timeout);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            dprintf(1, "BLKKILL-STALL thread %ld pass %" PRIu64 ": %ld requests unanswered for %d s (%s)\n",
                    w->index, pass, inflight, STALL_SECONDS, n < 0 ? strerror(errno) : "timeout");
            w->stalls++;
            return -1;
        }
        for (long e = 0; e < n; e++) {
            long slot = (long) (events[e].data >> 32);
            long chunk = (long) (events[e].data & 0xffffffffu);
            uint64_t offset = (uint64_t) w->index * (uint64_t) region + (uint64_t) chunk * (uint64_t) request;
            inflight--;
            done++;
            if (events[e].res != request) {
                dprintf(1, "BLKKILL-ERROR thread %ld pass %" PRIu64 " %s at %" PRIu64 ": result %lld\n", w->index,
                        pass, writing ? "write" : "read", offset, (long long) events[e].res);
                w->errors++;
            } else if (writing) {
                w->written += request;
            } else {
                w->read += request;
                w->mismatches += verify(buffers[slot], w->index, pass, offset);
            }
            if (next < chunks) {
                if (submit(w, ctx, fd, &iocbs[slot], buffers[slot], slot, next, writing, pass) != 0) {
                    return -1;
                }
                next++;
                inflight++;
            }
        }
    }
    return 0;
}

static void *run(void *arg) {
    struct worker *w = arg;
    int fd = open(device, O_RDWR | O_DIRECT);
    if (fd < 0) {
        dprintf(1, "BLKKILL-ERROR thread %ld open %s: %s\n", w->index, device, strerror(errno));
        w->errors++;
        return NULL;
    }
    aio_context_t ctx = 0;
    if (syscall(SYS_io_setup, depth, &ctx) != 0) {
        dprintf(1, "BLKKILL-ERROR thread %ld io_setup: %s\n", w->index, strerror(errno));
        w->errors++;
        close(fd);
        return NULL;
    }
    uint64_t *buffers[MAX_DEPTH];
    for (long i = 0; i < depth; i++) {
        void *b;
        if (posix_memalign(&b, 4096, request) != 0) {
            dprintf(1, "BLKKILL-ERROR thread %ld: no memory\n", w->index);
            w->errors++;
            return NULL;
        }
        buffers[i] = b;
    }
    for (uint64_t pass = 0; pass < (uint64_t) passes; pass++) {
        if (phase(w, ctx, fd, buffers, 1, pass) != 0 || phase(w, ctx, fd, buffers, 0, pass) != 0) {
            break;
        }
        dprintf(1, "BLKKILL-PROGRESS thread %ld pass %" PRIu64 "\n", w->index, pass);
    }
    syscall(SYS_io_destroy, ctx);
    close(fd);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 8) {
        dprintf(2, "usage: %s DEVICE SEED THREADS REGION_BYTES REQUEST_BYTES DEPTH PASSES\n", argv[0]);
        return 2;
    }
    device = argv[1];
    seed = strtoull(argv[2], NULL, 0);
    threads = atol(argv[3]);
    region = atol(argv[4]);
    request = atol(argv[5]);
    depth = atol(argv[6]);
    passes = atol(argv[7]);
    if (threads < 1 || threads > 64 || request < 4096 || request % 4096 != 0 || region % request != 0
            || depth < 1 || depth > MAX_DEPTH || passes < 1) {
        dprintf(2, "%s: bad arguments\n", argv[0]);
        return 2;
    }
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    struct worker workers[64];
    pthread_t ids[64];
    memset(workers, 0, sizeof workers);
    for (long t = 0; t < threads; t++) {
        workers[t].index = t;
        if (pthread_create(&ids[t], NULL, run, &workers[t]) != 0) {
            dprintf(1, "BLKKILL-ERROR cannot start thread %ld\n", t);
            return 1;
        }
    }
    long errors = 0, mismatches = 0, stalls = 0;
    uint64_t written = 0, read = 0;
    for (long t = 0; t < threads; t++) {
        pthread_join(ids[t], NULL);
        errors += workers[t].errors;
        mismatches += workers[t].mismatches;
        stalls += workers[t].stalls;
        written += workers[t].written;
        read += workers[t].read;
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    long ms = (end.tv_sec - start.tv_sec) * 1000 + (end.tv_nsec - start.tv_nsec) / 1000000;
    dprintf(1, "BLKKILL-RESULT errors %ld mismatches %ld stalls %ld written %" PRIu64 " read %" PRIu64 " ms %ld\n",
            errors, mismatches, stalls, written, read, ms);
    return errors == 0 && mismatches == 0 && stalls == 0 ? 0 : 1;
}
