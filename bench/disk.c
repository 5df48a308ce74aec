/* bench/disk.c: direct-I/O read bandwidth of the disk under a file.
 *
 *   disk FILE seq|rand BLOCK_BYTES THREADS SECONDS
 *
 * Opens FILE with O_DIRECT (the page cache is bypassed, so a cached file
 * still measures the disk) and reads BLOCK_BYTES-sized, BLOCK-aligned
 * pieces with pread from THREADS threads for about SECONDS seconds:
 *   seq   thread t reads blocks t, t + THREADS, t + 2 THREADS, ... (wrapping
 *         at the end of the file): one sequential stream, THREADS deep;
 *   rand  every thread reads uniformly random blocks.
 * Prints one line: "mode block threads bytes seconds MB/s IOPS".
 * Measure-only (bench/run.sh); not part of the library. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef O_DIRECT
#define O_DIRECT 040000
#endif

typedef struct job {
    int fd, rnd, tid, nth;
    uint64_t bs, nblk;
    double t_end;
    uint64_t bytes, ops;
    int err;
} job;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void *worker(void *arg)
{
    job *j = arg;
    void *buf = NULL;
    if (posix_memalign(&buf, 4096, j->bs)) {
        j->err = ENOMEM;
        return NULL;
    }
    uint64_t seed = 0x9e3779b97f4a7c15ull * (uint64_t)(j->tid + 1);
    uint64_t blk = (uint64_t)j->tid;
    while (now_s() < j->t_end) {
        for (int k = 0; k < 8; k++) {
            uint64_t b;
            if (j->rnd) {
                b = xorshift(&seed) % j->nblk;
            } else {
                b = blk % j->nblk;
                blk += (uint64_t)j->nth;
            }
            ssize_t r = pread(j->fd, buf, j->bs, (off_t)(b * j->bs));
            if (r < 0) {
                j->err = errno;
                free(buf);
                return NULL;
            }
            j->bytes += (uint64_t)r;
            j->ops++;
        }
    }
    free(buf);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: disk FILE seq|rand BLOCK_BYTES THREADS SECONDS\n");
        return 2;
    }
    int rnd = !strcmp(argv[2], "rand");
    if (!rnd && strcmp(argv[2], "seq")) {
        fprintf(stderr, "disk: mode must be seq or rand\n");
        return 2;
    }
    uint64_t bs = strtoull(argv[3], NULL, 10);
    int nth = atoi(argv[4]);
    double secs = atof(argv[5]);
    if (bs < 4096 || bs % 4096 || nth < 1 || nth > 256 || !(secs > 0)) {
        fprintf(stderr, "disk: BLOCK must be a multiple of 4096, THREADS 1..256, SECONDS > 0\n");
        return 2;
    }
    int fd = open(argv[1], O_RDONLY | O_DIRECT);
    if (fd < 0) {
        fprintf(stderr, "disk: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    struct stat st;
    if (fstat(fd, &st) || (uint64_t)st.st_size < bs) {
        fprintf(stderr, "disk: %s: too small\n", argv[1]);
        return 1;
    }
    uint64_t nblk = (uint64_t)st.st_size / bs;
    job *jobs = calloc((size_t)nth, sizeof *jobs);
    pthread_t *th = calloc((size_t)nth, sizeof *th);
    if (!jobs || !th) return 1;
    double t0 = now_s();
    for (int i = 0; i < nth; i++) {
        jobs[i] = (job){fd, rnd, i, nth, bs, nblk, t0 + secs, 0, 0, 0};
        if (pthread_create(&th[i], NULL, worker, &jobs[i])) return 1;
    }
    uint64_t bytes = 0, ops = 0;
    int err = 0;
    for (int i = 0; i < nth; i++) {
        pthread_join(th[i], NULL);
        bytes += jobs[i].bytes;
        ops += jobs[i].ops;
        if (jobs[i].err) err = jobs[i].err;
    }
    double t = now_s() - t0;
    if (err) {
        fprintf(stderr, "disk: pread: %s\n", strerror(err));
        return 1;
    }
    printf("%s %" PRIu64 " %d %" PRIu64 " %.3f %.1f %.0f\n", rnd ? "rand" : "seq", bs, nth, bytes, t,
           (double)bytes / t / 1e6, (double)ops / t);
    free(jobs);
    free(th);
    close(fd);
    return 0;
}
