/*
 * prunekit.binary._popcount: the packed binary GEMM of XNOR-Net (Rastegari et al., ECCV 2016).
 *
 * Both operands hold {-1,+1} vectors packed 64 per uint64 word (bit 1 = +1, bit 0 = -1,
 * unused tail bits 0 in both operands). For rows a (of A) and b (of B) with k real elements,
 *
 *     dot(a, b) = 2 * popcount(xnor(a, b)) - k = k - 2 * popcount(a ^ b)
 *
 * (the second form needs no NOT and lets zero tail bits cancel, since 0 ^ 0 = 0).
 *
 *     xor_gemm(a, b, out, m, n, words, k, kernel, threads) -> (kernel id, threads) used
 *
 * a: C-contiguous m x words uint64, b: n x words uint64, out: m x n int32 (written).
 * kernel: 0 = best available, 1 = portable (__builtin_popcountll), 2 = x86 POPCNT,
 * 3 = AVX-512 VPOPCNTDQ. CPU features are checked at run time, so one binary runs
 * everywhere; the AVX-512 function alone is compiled for that target.
 *
 * Plain C API (buffer protocol, no NumPy headers), the GIL is released while computing
 * and the rows of A are split over POSIX threads (no OpenMP: torch ships its own
 * OpenMP runtime and two of them in one process is asking for trouble).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#ifndef _WIN32
#include <pthread.h>
#define PK_HAVE_PTHREAD 1
#endif

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__)) && !defined(PK_NO_X86)
#define PK_X86 1
#include <immintrin.h>
#endif

enum { K_AUTO = 0, K_PORTABLE = 1, K_POPCNT = 2, K_AVX512 = 3 };
static const char *KERNEL_NAMES[] = {"auto", "portable", "popcnt", "avx512"};

typedef struct {
    const uint64_t *a;
    const uint64_t *b;
    int32_t *out;
    Py_ssize_t m, n, words;
    int64_t k;
    Py_ssize_t row0, row1; /* this job's rows of A */
    int kernel;
} job_t;

/* Cache blocking: a block of B rows is kept hot (about 32 KiB, the L1 data cache) while
 * this thread's rows of A stream past it, so every B word loaded is reused many times. */
static Py_ssize_t b_block_rows(Py_ssize_t words) {
    Py_ssize_t rows = (32 * 1024) / (words * 8 > 0 ? words * 8 : 8);
    rows &= ~(Py_ssize_t)3;
    return rows < 4 ? 4 : rows;
}

/* ---------------------------------------------------------------- scalar kernels */
/* 2 x 4 register tile: 8 accumulators + 3 live operands fit in the 16 general registers. */
#define DEFINE_SCALAR_KERNEL(NAME, ATTR, POPCOUNT)                                              \
    ATTR static void NAME(const job_t *J) {                                                     \
        const Py_ssize_t W = J->words, N = J->n, NB = b_block_rows(W);                          \
        const int64_t K = J->k;                                                                 \
        for (Py_ssize_t j0 = 0; j0 < N; j0 += NB) {                                             \
            const Py_ssize_t j1 = j0 + NB < N ? j0 + NB : N;                                    \
            Py_ssize_t i = J->row0;                                                             \
            for (; i + 2 <= J->row1; i += 2) {                                                  \
                const uint64_t *a0 = J->a + i * W, *a1 = a0 + W;                                \
                int32_t *o0 = J->out + i * N, *o1 = o0 + N;                                     \
                Py_ssize_t j = j0;                                                              \
                for (; j + 4 <= j1; j += 4) {                                                   \
                    const uint64_t *b0 = J->b + j * W, *b1 = b0 + W, *b2 = b1 + W, *b3 = b2 + W; \
                    int64_t c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0; \
                    for (Py_ssize_t w = 0; w < W; w++) {                                        \
                        const uint64_t x0 = a0[w], x1 = a1[w];                                  \
                        uint64_t y = b0[w];                                                     \
                        c00 += POPCOUNT(x0 ^ y); c10 += POPCOUNT(x1 ^ y);                       \
                        y = b1[w];                                                              \
                        c01 += POPCOUNT(x0 ^ y); c11 += POPCOUNT(x1 ^ y);                       \
                        y = b2[w];                                                              \
                        c02 += POPCOUNT(x0 ^ y); c12 += POPCOUNT(x1 ^ y);                       \
                        y = b3[w];                                                              \
                        c03 += POPCOUNT(x0 ^ y); c13 += POPCOUNT(x1 ^ y);                       \
                    }                                                                           \
                    o0[j] = (int32_t)(K - 2 * c00); o0[j + 1] = (int32_t)(K - 2 * c01);         \
                    o0[j + 2] = (int32_t)(K - 2 * c02); o0[j + 3] = (int32_t)(K - 2 * c03);     \
                    o1[j] = (int32_t)(K - 2 * c10); o1[j + 1] = (int32_t)(K - 2 * c11);         \
                    o1[j + 2] = (int32_t)(K - 2 * c12); o1[j + 3] = (int32_t)(K - 2 * c13);     \
                }                                                                               \
                for (; j < j1; j++) {                                                           \
                    const uint64_t *b0 = J->b + j * W;                                          \
                    int64_t c0 = 0, c1 = 0;                                                     \
                    for (Py_ssize_t w = 0; w < W; w++) {                                        \
                        c0 += POPCOUNT(a0[w] ^ b0[w]); c1 += POPCOUNT(a1[w] ^ b0[w]);           \
                    }                                                                           \
                    o0[j] = (int32_t)(K - 2 * c0); o1[j] = (int32_t)(K - 2 * c1);               \
                }                                                                               \
            }                                                                                   \
            for (; i < J->row1; i++) {                                                          \
                const uint64_t *a0 = J->a + i * W;                                              \
                for (Py_ssize_t j = j0; j < j1; j++) {                                          \
                    const uint64_t *b0 = J->b + j * W;                                          \
                    int64_t c = 0;                                                              \
                    for (Py_ssize_t w = 0; w < W; w++) c += POPCOUNT(a0[w] ^ b0[w]);            \
                    J->out[i * N + j] = (int32_t)(K - 2 * c);                                   \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }

#if defined(__GNUC__) || defined(__clang__)
#define PK_POPCOUNT64(x) __builtin_popcountll(x)
#else
static inline int pk_swar_popcount(uint64_t x) {
    x = x - ((x >> 1) & 0x5555555555555555ULL);
    x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
    return (int)((x * 0x0101010101010101ULL) >> 56);
}
#define PK_POPCOUNT64(x) pk_swar_popcount(x)
#endif

/* Portable: whatever the compiler makes of a 64-bit popcount for the baseline target. */
DEFINE_SCALAR_KERNEL(kernel_portable, , PK_POPCOUNT64)

#ifdef PK_X86
/* Same loop, compiled so __builtin_popcountll becomes the POPCNT instruction. */
DEFINE_SCALAR_KERNEL(kernel_popcnt, __attribute__((target("popcnt"))), __builtin_popcountll)

/* ---------------------------------------------------------------- AVX-512 kernel */
#define PK_AVX512 __attribute__((target("avx512f,avx512vpopcntdq")))

/* Sums of 4 vectors of 8 int64 lanes each -> 4 int64 results, with 128-bit lane shuffles
 * instead of four full horizontal reductions (the K loop is short, e.g. 8 steps for k=4096,
 * so the reduction is not negligible). */
PK_AVX512 static inline void hsum4(__m512i v0, __m512i v1, __m512i v2, __m512i v3, int64_t *r) {
    __m512i t0 = _mm512_add_epi64(_mm512_unpacklo_epi64(v0, v1), _mm512_unpackhi_epi64(v0, v1));
    __m512i t1 = _mm512_add_epi64(_mm512_unpacklo_epi64(v2, v3), _mm512_unpackhi_epi64(v2, v3));
    /* each 128-bit lane l of t0 holds (part of sum0, part of sum1); of t1 (sum2, sum3) */
    __m512i s = _mm512_add_epi64(_mm512_shuffle_i64x2(t0, t1, _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_i64x2(t0, t1, _MM_SHUFFLE(3, 1, 3, 1)));
    __m512i q = _mm512_add_epi64(_mm512_shuffle_i64x2(s, s, _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_i64x2(s, s, _MM_SHUFFLE(3, 1, 3, 1)));
    /* lanes 0..1 of q: (sum0, sum1), lanes 2..3 of q: (sum2, sum3) */
    _mm256_storeu_si256((__m256i *)r, _mm512_castsi512_si256(q));
}

#define PK_LOAD(p, w, last, mask) ((w) == (last) ? _mm512_maskz_loadu_epi64((mask), (p) + (w) * 8) \
                                                 : _mm512_loadu_si512((const void *)((p) + (w) * 8)))
#define PK_XPC(acc, x, y) acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512((x), (y))))

/* 4 x 4 register tile: 16 accumulators + 4 A vectors + 1 B vector = 21 of 32 zmm registers. */
PK_AVX512 static void kernel_avx512(const job_t *J) {
    const Py_ssize_t W = J->words, N = J->n, NB = b_block_rows(W);
    const Py_ssize_t V = (W + 7) / 8;            /* 512-bit steps per row */
    const Py_ssize_t last = (W % 8) ? V - 1 : -1; /* the step that needs a masked load */
    const __mmask8 mask = (__mmask8)((1u << (W % 8)) - 1u);
    const int64_t K = J->k;
    int64_t r[4];
    for (Py_ssize_t j0 = 0; j0 < N; j0 += NB) {
        const Py_ssize_t j1 = j0 + NB < N ? j0 + NB : N;
        Py_ssize_t i = J->row0;
        for (; i + 4 <= J->row1; i += 4) {
            const uint64_t *a0 = J->a + i * W, *a1 = a0 + W, *a2 = a1 + W, *a3 = a2 + W;
            Py_ssize_t j = j0;
            for (; j + 4 <= j1; j += 4) {
                const uint64_t *b0 = J->b + j * W, *b1 = b0 + W, *b2 = b1 + W, *b3 = b2 + W;
                __m512i c00 = _mm512_setzero_si512(), c01 = c00, c02 = c00, c03 = c00;
                __m512i c10 = c00, c11 = c00, c12 = c00, c13 = c00;
                __m512i c20 = c00, c21 = c00, c22 = c00, c23 = c00;
                __m512i c30 = c00, c31 = c00, c32 = c00, c33 = c00;
                for (Py_ssize_t v = 0; v < V; v++) {
                    const __m512i x0 = PK_LOAD(a0, v, last, mask), x1 = PK_LOAD(a1, v, last, mask);
                    const __m512i x2 = PK_LOAD(a2, v, last, mask), x3 = PK_LOAD(a3, v, last, mask);
                    __m512i y = PK_LOAD(b0, v, last, mask);
                    PK_XPC(c00, x0, y); PK_XPC(c10, x1, y); PK_XPC(c20, x2, y); PK_XPC(c30, x3, y);
                    y = PK_LOAD(b1, v, last, mask);
                    PK_XPC(c01, x0, y); PK_XPC(c11, x1, y); PK_XPC(c21, x2, y); PK_XPC(c31, x3, y);
                    y = PK_LOAD(b2, v, last, mask);
                    PK_XPC(c02, x0, y); PK_XPC(c12, x1, y); PK_XPC(c22, x2, y); PK_XPC(c32, x3, y);
                    y = PK_LOAD(b3, v, last, mask);
                    PK_XPC(c03, x0, y); PK_XPC(c13, x1, y); PK_XPC(c23, x2, y); PK_XPC(c33, x3, y);
                }
                int32_t *o = J->out + i * N + j;
                hsum4(c00, c01, c02, c03, r);
                for (int q = 0; q < 4; q++) o[q] = (int32_t)(K - 2 * r[q]);
                hsum4(c10, c11, c12, c13, r);
                for (int q = 0; q < 4; q++) o[N + q] = (int32_t)(K - 2 * r[q]);
                hsum4(c20, c21, c22, c23, r);
                for (int q = 0; q < 4; q++) o[2 * N + q] = (int32_t)(K - 2 * r[q]);
                hsum4(c30, c31, c32, c33, r);
                for (int q = 0; q < 4; q++) o[3 * N + q] = (int32_t)(K - 2 * r[q]);
            }
            for (; j < j1; j++) { /* leftover columns: a 4 x 1 tile */
                const uint64_t *b0 = J->b + j * W;
                __m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, c3 = c0;
                for (Py_ssize_t v = 0; v < V; v++) {
                    const __m512i y = PK_LOAD(b0, v, last, mask);
                    PK_XPC(c0, PK_LOAD(a0, v, last, mask), y);
                    PK_XPC(c1, PK_LOAD(a1, v, last, mask), y);
                    PK_XPC(c2, PK_LOAD(a2, v, last, mask), y);
                    PK_XPC(c3, PK_LOAD(a3, v, last, mask), y);
                }
                hsum4(c0, c1, c2, c3, r);
                for (int q = 0; q < 4; q++) J->out[(i + q) * N + j] = (int32_t)(K - 2 * r[q]);
            }
        }
        for (; i < J->row1; i++) { /* leftover rows: 1 x 1 */
            const uint64_t *a0 = J->a + i * W;
            for (Py_ssize_t j = j0; j < j1; j++) {
                const uint64_t *b0 = J->b + j * W;
                __m512i c = _mm512_setzero_si512();
                for (Py_ssize_t v = 0; v < V; v++) PK_XPC(c, PK_LOAD(a0, v, last, mask), PK_LOAD(b0, v, last, mask));
                J->out[i * N + j] = (int32_t)(K - 2 * _mm512_reduce_add_epi64(c));
            }
        }
    }
}
#endif /* PK_X86 */

/* ---------------------------------------------------------------- dispatch */
static int kernel_supported(int kernel) {
    switch (kernel) {
    case K_PORTABLE:
        return 1;
#ifdef PK_X86
    case K_POPCNT:
        __builtin_cpu_init();
        return __builtin_cpu_supports("popcnt") ? 1 : 0;
    case K_AVX512:
        __builtin_cpu_init();
        /* libgcc also checks that the OS saves the AVX-512 register state (XCR0). */
        return (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq")) ? 1 : 0;
#endif
    default:
        return 0;
    }
}

static int best_kernel(void) {
    for (int k = K_AVX512; k > K_PORTABLE; k--)
        if (kernel_supported(k)) return k;
    return K_PORTABLE;
}

static void run_job(const job_t *J) {
    switch (J->kernel) {
#ifdef PK_X86
    case K_AVX512: kernel_avx512(J); break;
    case K_POPCNT: kernel_popcnt(J); break;
#endif
    default: kernel_portable(J); break;
    }
}

/* Work sharing: threads take chunks of A rows from a shared counter, so a thread that the OS
 * deschedules (the machine is busy, or torch's OpenMP workers are still spinning) just takes
 * fewer chunks instead of holding everybody up as a static split would. The caller returns
 * as soon as every row is done: helper threads are detached, and one that starts late finds
 * no work left and exits (the pool is freed by whoever drops the last reference). */
typedef struct {
    job_t base;           /* everything but row0/row1 */
    Py_ssize_t chunk;     /* rows per chunk, a multiple of 4 */
    Py_ssize_t next;      /* next unclaimed row (atomic) */
    Py_ssize_t done;      /* rows finished (atomic) */
    int refs;             /* threads still holding the pool (atomic) */
} pool_t;

#if defined(__GNUC__) || defined(__clang__)
#define PK_FETCH_ADD(p, v) __atomic_fetch_add((p), (v), __ATOMIC_ACQ_REL)
#define PK_LOAD_ACQ(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#else /* no threads without GCC-style atomics (see PK_HAVE_PTHREAD below) */
static Py_ssize_t pk_fetch_add(Py_ssize_t *p, Py_ssize_t v) { Py_ssize_t o = *p; *p += v; return o; }
#define PK_FETCH_ADD(p, v) pk_fetch_add((p), (v))
#define PK_LOAD_ACQ(p) (*(p))
#undef PK_HAVE_PTHREAD
#endif

static void run_pool(pool_t *P) {
    for (;;) {
        Py_ssize_t r0 = PK_FETCH_ADD(&P->next, P->chunk);
        if (r0 >= P->base.m) break;
        job_t J = P->base;
        J.row0 = r0;
        J.row1 = r0 + P->chunk < P->base.m ? r0 + P->chunk : P->base.m;
        run_job(&J);
        PK_FETCH_ADD(&P->done, J.row1 - J.row0);
    }
}

#ifdef PK_HAVE_PTHREAD
#include <sched.h>
#include <stdlib.h>

static void pool_release(pool_t *P) {
    if (__atomic_sub_fetch(&P->refs, 1, __ATOMIC_ACQ_REL) == 0) free(P);
}

static void *thread_main(void *arg) {
    run_pool((pool_t *)arg);
    pool_release((pool_t *)arg);
    return NULL;
}
#endif

#define PK_MAX_THREADS 256

static PyObject *py_xor_gemm(PyObject *self, PyObject *args) {
    PyObject *oa, *ob, *oo;
    Py_ssize_t m, n, words;
    long long k;
    int kernel, threads;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOnnnLii", &oa, &ob, &oo, &m, &n, &words, &k, &kernel, &threads))
        return NULL;
    if (m < 0 || n < 0 || words < 0 || k < 0 || k > 64LL * words || k > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "xor_gemm: need m, n, words >= 0 and 0 <= k <= 64 * words");
        return NULL;
    }
    if (kernel < K_AUTO || kernel > K_AVX512) {
        PyErr_Format(PyExc_ValueError, "xor_gemm: unknown kernel id %d", kernel);
        return NULL;
    }
    if (kernel == K_AUTO) kernel = best_kernel();
    if (!kernel_supported(kernel)) {
        PyErr_Format(PyExc_RuntimeError, "xor_gemm: kernel '%s' is not supported by this CPU or build",
                     KERNEL_NAMES[kernel]);
        return NULL;
    }
    Py_buffer ba, bb, bo;
    if (PyObject_GetBuffer(oa, &ba, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (PyObject_GetBuffer(ob, &bb, PyBUF_C_CONTIGUOUS) < 0) { PyBuffer_Release(&ba); return NULL; }
    if (PyObject_GetBuffer(oo, &bo, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&ba); PyBuffer_Release(&bb); return NULL;
    }
    PyObject *result = NULL;
    if (ba.len < (Py_ssize_t)(m * words * 8) || bb.len < (Py_ssize_t)(n * words * 8) ||
        bo.len < (Py_ssize_t)(m * n * 4)) {
        PyErr_SetString(PyExc_ValueError, "xor_gemm: a buffer is smaller than its stated shape");
        goto done;
    }
    if (threads < 1) threads = 1;
    if (threads > PK_MAX_THREADS) threads = PK_MAX_THREADS;
    /* Starting a thread and getting it scheduled costs tens of microseconds (more on a busy
     * machine), so each thread gets at least 4M word pairs (about 0.3 ms of AVX-512 work). */
    {
        long long cap = ((long long)m * n * (words ? words : 1)) >> 22;
        if (threads > cap) threads = cap < 1 ? 1 : (int)cap;
    }
    if (threads > m) threads = m > 0 ? (int)m : 1;
    {
        const job_t base = {(const uint64_t *)ba.buf, (const uint64_t *)bb.buf, (int32_t *)bo.buf,
                            m, n, words, (int64_t)k, 0, 0, kernel};
        /* about 8 chunks per thread, whole 4-row tiles, at least 16 rows */
        Py_ssize_t chunk = m / ((Py_ssize_t)threads * 8);
        chunk = (chunk + 3) & ~(Py_ssize_t)3;
        if (chunk < 16) chunk = 16;
        Py_BEGIN_ALLOW_THREADS
#ifdef PK_HAVE_PTHREAD
        pool_t *pool = (threads > 1) ? (pool_t *)malloc(sizeof(pool_t)) : NULL;
        if (pool) {
            *pool = (pool_t){base, chunk, 0, 0, 1};
            pthread_attr_t attr;
            pthread_attr_init(&attr);
            pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            for (int t = 1; t < threads; t++) {
                pthread_t tid;
                __atomic_add_fetch(&pool->refs, 1, __ATOMIC_ACQ_REL);
                if (pthread_create(&tid, &attr, thread_main, pool) != 0) {
                    __atomic_sub_fetch(&pool->refs, 1, __ATOMIC_ACQ_REL);
                    break; /* fewer helpers: the caller does their share */
                }
            }
            pthread_attr_destroy(&attr);
            run_pool(pool);
            /* rows claimed by helpers may still be running: wait for them, never for idle threads */
            while (PK_LOAD_ACQ(&pool->done) < m) sched_yield();
            pool_release(pool);
        } else
#endif
        {
            pool_t single = {base, m > 0 ? m : 1, 0, 0, 1};
            run_pool(&single);
        }
        Py_END_ALLOW_THREADS
    }
    result = Py_BuildValue("(ii)", kernel, threads);
done:
    PyBuffer_Release(&ba);
    PyBuffer_Release(&bb);
    PyBuffer_Release(&bo);
    return result;
}

static PyObject *py_kernels(PyObject *self, PyObject *noargs) {
    (void)self; (void)noargs;
    PyObject *lst = PyList_New(0);
    if (!lst) return NULL;
    for (int k = K_PORTABLE; k <= K_AVX512; k++) {
        if (!kernel_supported(k)) continue;
        PyObject *s = PyUnicode_FromString(KERNEL_NAMES[k]);
        if (!s || PyList_Append(lst, s) < 0) { Py_XDECREF(s); Py_DECREF(lst); return NULL; }
        Py_DECREF(s);
    }
    return lst;
}

static PyMethodDef methods[] = {
    {"xor_gemm", py_xor_gemm, METH_VARARGS,
     "xor_gemm(a, b, out, m, n, words, k, kernel, threads) -> (kernel id, threads used).\n\n"
     "out[i, j] = k - 2 * popcount(a[i] ^ b[j]) over `words` uint64 words per row."},
    {"kernels", py_kernels, METH_NOARGS, "Names of the kernels this CPU and build can run."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_popcount",
    "Packed binary GEMM (xor + popcount) with run-time CPU dispatch; see prunekit.binary.gemm.",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__popcount(void) { return PyModule_Create(&moduledef); }
