"""The CPU worker pool's native half: C source compiled into every bundle with CPU code.

    obj = compile_pool()        # link.py: cc -c gpuaot_pool.c (POOL_SOURCE, as written here)

The run time (``gpuaot.runtime.pool``) starts the workers as Python threads, each of which
calls ``gpuaot_rt_pool_work`` once and stays there, without the GIL, until the pool stops; a
launch (``gpuaot_rt_pool_run``) posts its jobs and runs them itself too. A worker that has
just finished spins (``pause``) for ``spin_ns`` before it sleeps on a futex, so back-to-back
launches hand off in a microsecond instead of a scheduler wake-up (50-110 µs on a VM).

Each job ``[first, last)`` of blocks is claimed by one compare-and-swap on its ``state``
(``generation << 1 | taken``): a worker runs it, or the launcher, done with its own, takes
it over, so a worker that is asleep or descheduled delays nothing but its job in progress.
Only who runs a job changes, never what it computes. No pthread call: nothing but libc.
"""

from __future__ import annotations

from ....bundle.abi import POOL_PREFIX

POOL_FILE = "gpuaot_pool.c"
POOL_MAX_JOBS = 256

POOL_SOURCE = r"""
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

#define MAX_JOBS @MAX_JOBS@
#define LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)

typedef void (*entry_fn)(void *argv, void *dims, int64_t first, int64_t last, void *exc);

struct job { /* one run of blocks */
    entry_fn fn;
    void *argv, *dims, *exc;
    int64_t first, last;
};

struct slot {
    struct job job;
    uint64_t state;    /* generation << 1 | taken */
    uint32_t finished; /* futex: the generation last run */
    uint32_t waiter;   /* the launcher sleeps on finished */
} __attribute__((aligned(64)));

struct pool {
    uint32_t bell;     /* futex: the generation last posted */
    uint32_t sleepers; /* workers asleep on bell */
    uint32_t stop;
    uint32_t njobs;    /* of the generation last posted */
    uint64_t gen;      /* the launcher's (one launch at a time: the run time's lock) */
    int64_t spin_ns;
    struct slot slots[MAX_JOBS];
} __attribute__((aligned(64)));

static void relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void sleep_on(uint32_t *word, uint32_t seen) {
#if defined(__linux__)
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, seen, (void *)0, (void *)0, 0);
#else
    (void)word, (void)seen;
    usleep(50);
#endif
}

static void wake(uint32_t *word, int n) {
#if defined(__linux__)
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, n, (void *)0, (void *)0, 0);
#else
    (void)word, (void)n;
#endif
}

/* Run job k of generation g if nobody has taken it: 1 when this thread ran it. */
static int take(struct pool *p, uint32_t k, uint64_t g) {
    struct slot *s = &p->slots[k];
    uint64_t want = g << 1;
    if (!__atomic_compare_exchange_n(&s->state, &want, want | 1, 0, __ATOMIC_SEQ_CST,
                                     __ATOMIC_SEQ_CST))
        return 0;
    s->job.fn(s->job.argv, s->job.dims, s->job.first, s->job.last, s->job.exc);
    STORE(&s->finished, (uint32_t)g);
    if (LOAD(&s->waiter))
        wake(&s->finished, 1);
    return 1;
}

/* Jobs [1, n) from `start` on, wrapping: each taken at most once. */
static void sweep(struct pool *p, uint32_t n, uint32_t start, uint64_t g) {
    for (uint32_t i = 0; i + 1 < n; i++)
        take(p, 1 + (start + i) % (n - 1), g);
}

size_t @PREFIX@size(void) { return sizeof(struct pool) + 64; }

/* `mem`: size() zeroed bytes, kept as long as a worker may run. */
struct pool *@PREFIX@init(void *mem) { return (struct pool *)(((uintptr_t)mem + 63) & ~(uintptr_t)63); }

int64_t @PREFIX@max_jobs(void) { return MAX_JOBS; }

/* A worker: runs jobs until stopped (then returns 0). `index` spreads where workers start. */
int64_t @PREFIX@work(struct pool *p, int64_t index) {
    uint32_t seen = LOAD(&p->bell);
    for (;;) {
        int64_t t0 = now_ns();
        uint32_t b, spins = 0;
        while ((b = LOAD(&p->bell)) == seen) {
            if (LOAD(&p->stop))
                return 0;
            relax();
            if ((++spins & 63) == 0 && now_ns() - t0 >= LOAD(&p->spin_ns)) {
                __atomic_add_fetch(&p->sleepers, 1, __ATOMIC_SEQ_CST);
                if (LOAD(&p->bell) == seen && !LOAD(&p->stop))
                    sleep_on(&p->bell, seen);
                __atomic_sub_fetch(&p->sleepers, 1, __ATOMIC_SEQ_CST);
                t0 = now_ns();
            }
        }
        seen = b;
        if (LOAD(&p->stop))
            return 0;
        uint64_t g = LOAD(&p->gen);
        uint32_t n = LOAD(&p->njobs);
        if (n > MAX_JOBS)
            n = MAX_JOBS;
        if (n > 1)
            sweep(p, n, (uint32_t)index % (n - 1), g);
    }
}

/* Blocks [0, nblocks) as jobs: job k runs fn(argv + k * stride, dims, first, last, exc).
   Not guided: n jobs, the k-th of n runs, the first nblocks % n one block longer (the run
   time's _split). Guided (then stride is 0): each job a 1 / (2 * threads) of the blocks
   left, at least `n` blocks, so the last jobs are short and whoever finishes first takes
   them. Posts jobs [1, ...), wakes at most threads - 1 sleeping workers, runs job 0, takes
   over what nobody has taken, waits for the rest; everyone spins `spin_ns` before sleeping
   (0 when oversubscribed). One launch at a time per pool. */
void @PREFIX@run(struct pool *p, entry_fn fn, char *argv, int64_t stride, void *dims, void *exc,
                 int64_t nblocks, int64_t n, int64_t threads, int64_t guided, int64_t spin_ns) {
    if (nblocks < 1 || n < 1 || threads < 1)
        return;
    int64_t step = nblocks / n, extra = nblocks % n, at = 0, k = 0;
    uint64_t g = p->gen + 1;
    STORE(&p->spin_ns, spin_ns);
    struct job *j, mine;
    for (; at < nblocks; k++) {
        int64_t len;
        if (guided) {
            len = (nblocks - at + 2 * threads - 1) / (2 * threads);
            len = len < n ? n : len;
        } else
            len = step + (k < extra);
        if (k == MAX_JOBS - 1 || at + len > nblocks)
            len = nblocks - at; /* (the run time never asks for more than MAX_JOBS) */
        j = k ? &p->slots[k].job : &mine;
        j->fn = fn, j->argv = argv + k * stride, j->dims = dims, j->exc = exc;
        j->first = at, j->last = at + len;
        at += len;
        if (k)
            STORE(&p->slots[k].state, g << 1);
    }
    n = k;
    STORE(&p->njobs, (uint32_t)n);
    STORE(&p->gen, g);
    STORE(&p->bell, (uint32_t)g);
    if (n > 1 && LOAD(&p->sleepers)) /* as many as there are jobs and threads for */
        wake(&p->bell, (int)(n < threads ? n - 1 : threads - 1));
    fn(mine.argv, mine.dims, mine.first, mine.last, mine.exc);
    sweep(p, (uint32_t)n, 0, g);
    for (int64_t i = 1; i < n; i++) {
        struct slot *s = &p->slots[i];
        int64_t t0 = now_ns();
        uint32_t f, spins = 0;
        while ((f = LOAD(&s->finished)) != (uint32_t)g) {
            relax();
            if ((++spins & 63) == 0 && now_ns() - t0 >= LOAD(&p->spin_ns)) {
                STORE(&s->waiter, 1);
                if (LOAD(&s->finished) == f)
                    sleep_on(&s->finished, f);
            }
        }
        STORE(&s->waiter, 0);
    }
}

/* Workers return from work() (the pool's memory must outlive them). */
void @PREFIX@stop(struct pool *p) {
    STORE(&p->stop, 1);
    __atomic_add_fetch(&p->bell, 1, __ATOMIC_SEQ_CST);
    wake(&p->bell, 0x7fffffff);
}
"""


def pool_source() -> str:
    """The C source, with the exported names' prefix and the job limit filled in."""
    return POOL_SOURCE.replace("@PREFIX@", POOL_PREFIX).replace("@MAX_JOBS@", str(POOL_MAX_JOBS))
