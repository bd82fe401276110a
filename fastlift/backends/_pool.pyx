# cython: language_level=3, boundscheck=False, wraparound=False
"""A caching allocator for numpy array data during a CPU run (``CpuOps.compute_context``).

Why: a chunk's activations and multipliers are tens of MB each. glibc serves such blocks with
mmap and unmaps them on free, so every new array page-faults all its pages in again, a large
share of a run's time (bench/README.md has the measurements). The same shapes come back every
chunk, so a free block of exactly the requested size is kept and handed
to the next request for that size.

How: numpy (>= 1.22) lets a context install its own data allocator (``PyDataMem_SetHandler``,
NEP 49). `caching` installs this one for the current thread's context and restores the previous
handler on exit. Arrays keep the handler they were allocated with, so arrays that outlive the
run are freed through it later and go straight back to the C library once no run or hold is active.

Rules: only blocks >= `MIN_BYTES` are cached, matched by exact size, most recently freed first;
at most `limit` bytes stay cached (a free beyond that pushes the oldest blocks out). The cache
lives while a run is active or a session holds it (`hold`: an `Explainer` from creation to
``close``), so the calls of one session reuse its blocks instead of faulting fresh pages in
again; when neither is left, the cache is released at once. ``calloc`` requests served from the
cache are zeroed with memset. Every function takes one lock (frees may come from any thread).
New blocks of `HUGE_BYTES` or more get Linux's transparent-huge-page advice (``madvise``), as
numpy's own allocator gives them: the kernels' strided rows then miss the TLB far less.
"""

cimport numpy as cnp
from cpython.pycapsule cimport PyCapsule_New

cnp.import_array()

cdef extern from *:
    """
    #include <stdlib.h>
    #include <string.h>
    #if defined(__linux__)
    #include <sys/mman.h>
    #endif
    #include "pythread.h"

    #define FL_POOL_SLOTS 256
    #define FL_POOL_MIN_BYTES ((size_t)1 << 16)
    #define FL_POOL_HUGE_BYTES ((size_t)1 << 22)

    typedef struct { void *ptr; size_t size; } fl_pool_slot;

    static struct {
        PyThread_type_lock lock;
        long active;                  /* runs inside caching() and open holds */
        size_t cached, limit;         /* bytes held in slots; cap */
        size_t hits, misses;          /* counters, for tests and tuning */
        int n;                        /* slots used, in order of freeing */
        fl_pool_slot slot[FL_POOL_SLOTS];
    } fl_pool;

    /* A cached block of exactly `size` bytes (most recently freed first), or NULL. */
    static void *fl_pool_take(size_t size)
    {
        void *p = NULL;
        if (size < FL_POOL_MIN_BYTES)
            return NULL;
        PyThread_acquire_lock(fl_pool.lock, WAIT_LOCK);
        if (fl_pool.active > 0) {
            for (int i = fl_pool.n - 1; i >= 0; --i) {
                if (fl_pool.slot[i].size == size) {
                    p = fl_pool.slot[i].ptr;
                    memmove(&fl_pool.slot[i], &fl_pool.slot[i + 1], (size_t)(fl_pool.n - 1 - i) * sizeof(fl_pool_slot));
                    fl_pool.n -= 1;
                    fl_pool.cached -= size;
                    break;
                }
            }
            if (p)
                fl_pool.hits += 1;
            else
                fl_pool.misses += 1;
        }
        PyThread_release_lock(fl_pool.lock);
        return p;
    }

    /* A new block of FL_POOL_HUGE_BYTES or more: ask Linux for transparent huge pages, as numpy's
       own allocator does (ours replaces it). The kernels stream through tens of MB in several
       rows at once; with 4 KiB pages their TLB misses cost ~3% of a ChromBPNet region. */
    static void fl_pool_advise(void *p, size_t size)
    {
    #if defined(__linux__) && defined(MADV_HUGEPAGE)
        if (p != NULL && size >= FL_POOL_HUGE_BYTES) {
            size_t skip = (4096u - (size_t)p % 4096u) % 4096u;
            (void)madvise((char *)p + skip, (size - skip) / 4096u * 4096u, MADV_HUGEPAGE);  /* advice only */
        }
    #else
        (void)p;
        (void)size;
    #endif
    }

    static void *fl_pool_malloc(void *ctx, size_t size)
    {
        void *p = fl_pool_take(size);
        (void)ctx;
        if (p)
            return p;
        p = malloc(size);
        fl_pool_advise(p, size);
        return p;
    }

    static void *fl_pool_calloc(void *ctx, size_t nelem, size_t elsize)
    {
        void *p;
        (void)ctx;
        if (elsize != 0 && nelem > (size_t)-1 / elsize)
            return NULL;
        p = fl_pool_take(nelem * elsize);
        if (p) {
            memset(p, 0, nelem * elsize);
            return p;
        }
        p = calloc(nelem, elsize);
        fl_pool_advise(p, nelem * elsize);
        return p;
    }

    static void *fl_pool_realloc(void *ctx, void *ptr, size_t new_size)
    {
        (void)ctx;
        return realloc(ptr, new_size);
    }

    static void fl_pool_free(void *ctx, void *ptr, size_t size)
    {
        int kept = 0;
        (void)ctx;
        if (ptr == NULL)
            return;
        if (size >= FL_POOL_MIN_BYTES) {
            PyThread_acquire_lock(fl_pool.lock, WAIT_LOCK);
            if (fl_pool.active > 0 && size <= fl_pool.limit) {
                /* full: the oldest blocks make room (a run's own sizes push out earlier runs') */
                while (fl_pool.n > 0 && (fl_pool.n == FL_POOL_SLOTS || fl_pool.cached + size > fl_pool.limit)) {
                    free(fl_pool.slot[0].ptr);
                    fl_pool.cached -= fl_pool.slot[0].size;
                    fl_pool.n -= 1;
                    memmove(&fl_pool.slot[0], &fl_pool.slot[1], (size_t)fl_pool.n * sizeof(fl_pool_slot));
                }
                fl_pool.slot[fl_pool.n].ptr = ptr;
                fl_pool.slot[fl_pool.n].size = size;
                fl_pool.n += 1;
                fl_pool.cached += size;
                kept = 1;
            }
            PyThread_release_lock(fl_pool.lock);
        }
        if (!kept)
            free(ptr);
    }

    /* Free every cached block (caller holds the lock). */
    static void fl_pool_release_locked(void)
    {
        for (int i = 0; i < fl_pool.n; ++i)
            free(fl_pool.slot[i].ptr);
        fl_pool.n = 0;
        fl_pool.cached = 0;
    }

    static PyDataMem_Handler fl_pool_handler = {
        "fastlift_pool", 1, {NULL, fl_pool_malloc, fl_pool_calloc, fl_pool_realloc, fl_pool_free}};

    static void *fl_pool_handler_address(void) { return &fl_pool_handler; }

    static int fl_pool_init(void)
    {
        fl_pool.lock = PyThread_allocate_lock();
        return fl_pool.lock ? 0 : -1;
    }
    static void fl_pool_lock(void) { PyThread_acquire_lock(fl_pool.lock, WAIT_LOCK); }
    static void fl_pool_unlock(void) { PyThread_release_lock(fl_pool.lock); }
    """
    ctypedef struct fl_pool_state:
        long active
        size_t cached, limit, hits, misses
        int n
    fl_pool_state fl_pool
    void *fl_pool_handler_address()
    size_t FL_POOL_MIN_BYTES
    size_t FL_POOL_HUGE_BYTES
    int FL_POOL_SLOTS
    int fl_pool_init()
    void fl_pool_lock()
    void fl_pool_unlock()
    void fl_pool_release_locked()

cdef extern from "numpy/arrayobject.h":
    object PyDataMem_SetHandler(object handler)

if fl_pool_init() != 0:
    raise MemoryError("fastlift._pool: could not allocate its lock")

#: Smallest block that is cached (bytes); smaller requests go straight to the C library.
MIN_BYTES = FL_POOL_MIN_BYTES
#: Most blocks cached at once.
SLOTS = FL_POOL_SLOTS
#: Smallest new block for which Linux is asked for transparent huge pages (bytes), as numpy does.
HUGE_BYTES = FL_POOL_HUGE_BYTES

_HANDLER = PyCapsule_New(fl_pool_handler_address(), "mem_handler", NULL)


def _enter(size_t limit):
    fl_pool_lock()
    fl_pool.active += 1
    if limit > fl_pool.limit:
        fl_pool.limit = limit
    fl_pool_unlock()


def _exit():
    fl_pool_lock()
    fl_pool.active -= 1
    if fl_pool.active == 0:
        fl_pool_release_locked()
        fl_pool.limit = 0
    fl_pool_unlock()


class caching:
    """``with caching(limit): ...`` — numpy arrays allocated in this context reuse freed blocks.

    ``limit``: most bytes kept cached (free) at once; the largest limit of the active runs and
    holds applies. Re-entrant and usable from several threads; the cache is released when the
    last active run exits and no `hold` is open.
    """

    def __init__(self, limit: int):
        if limit < 0:
            raise ValueError(f"limit must be >= 0 bytes; got {limit!r}")
        self.limit = int(limit)
        self._previous = None

    def __enter__(self):
        _enter(self.limit)
        self._previous = PyDataMem_SetHandler(_HANDLER)
        return self

    def __exit__(self, *exc):
        PyDataMem_SetHandler(self._previous)
        self._previous = None
        _exit()
        return False


class hold:
    """Keep freed blocks cached between runs until `close` (a session's lifetime): blocks freed
    while it is open, inside a run or not, are kept for the next run (up to ``limit`` bytes).
    Closing twice is harmless."""

    def __init__(self, limit: int):
        if limit < 0:
            raise ValueError(f"limit must be >= 0 bytes; got {limit!r}")
        _enter(<size_t>int(limit))
        self.open = True

    def close(self):
        if self.open:
            self.open = False
            _exit()


def release():
    """Free every cached block now, unless a run or a hold is active (then they stay in its use)."""
    fl_pool_lock()
    if fl_pool.active == 0:
        fl_pool_release_locked()
        fl_pool.limit = 0
    fl_pool_unlock()


def stats() -> dict:
    """Counters of the cache: ``{"active", "cached_bytes", "cached_blocks", "hits", "misses"}``."""
    fl_pool_lock()
    out = {"active": fl_pool.active, "cached_bytes": fl_pool.cached, "cached_blocks": fl_pool.n,
           "hits": fl_pool.hits, "misses": fl_pool.misses}
    fl_pool_unlock()
    return out
