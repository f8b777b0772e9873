/* The dispatch point's hot paths in C: an op with nobody listening; an observed op on the
 * CPU (run and timed here), with its record made here when every listener takes one and
 * nothing else (`STATE.lean`: a profile, a trace), or one once the output passed the exact
 * NaN/inf check (`STATE.lean_checked`: a checked trace), or nothing at all once it passed that check
 * (`STATE.quiet`: the pytest plugin until its first finding). Everything else (failed checks, full
 * events, GPU timing, error messages, stacks) stays in Python: this calls back into
 * `_dispatch._after`, `_dispatch._observed`, `_source.stack_here` and `Site.error`.
 *
 * It does exactly what `_dispatch.dispatch_py` and `_observed` do, in the same order, and
 * makes the same record tuple; tests run both (TRACETENSOR_PURE=1 selects the Python
 * ones). Built as an optional extension: without a C compiler the package installs and
 * runs on the Python path.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>
#include <frameobject.h>
#include <structmember.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

static PyObject *g_state;     /* events.STATE */
static PyObject *g_run;       /* events.RUN (a threading.local) */
static PyObject *g_seq;       /* events._SEQ (itertools.count) */
static PyObject *g_auto_run;  /* events.auto_run */
static PyObject *g_observed;  /* _dispatch._observed */
static PyObject *g_after;     /* _dispatch._after */
static PyObject *g_finite;    /* events.finite */
static PyObject *g_all_finite; /* _dispatch._all_finite */
static PyObject *g_stack_here; /* _source.stack_here */
static PyObject *g_ndarray;   /* numpy.ndarray */
static PyObject *g_cpu;       /* device.CPU */
static PyObject *g_noattrs;   /* _dispatch._NOATTRS ({}) */

static PyObject *s_summarized, *s_quiet, *s_plain;
static PyObject *s_outputs, *s_listeners, *s_lean, *s_checked, *s_stacks, *s_run, *s_callback, *s_error, *s_shape, *s_dtype, *s_nbytes;

enum { F_DEVICE = 6, F_STACK = 7, F_SAVES = 12, N_FIELDS = 13 };

/* time.perf_counter_ns(): CLOCK_MONOTONIC on Linux, so records and run markers share a clock */
static inline long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void keep(PyObject **slot, PyObject *v) {
    PyObject *old = *slot;
    *slot = Py_NewRef(v);
    Py_XDECREF(old);
}

/* What the op raised, as `site.error(arrays, attrs, exc)`, raised "from None". Only
 * Exception subclasses are turned (KeyboardInterrupt and the like pass unchanged). */
static PyObject *fail(PyObject *site, PyObject *arrays, PyObject *attrs) {
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return NULL;
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    if (tb != NULL)
        PyException_SetTraceback(exc, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    PyObject *err = PyObject_CallMethodObjArgs(site, s_error, arrays, attrs ? attrs : g_noattrs, exc, NULL);
    if (err == NULL) {
        Py_DECREF(exc);
        return NULL;
    }
    if (err != exc) {
        PyException_SetContext(err, exc); /* steals exc; as `raise err from None` in an except block */
        PyException_SetCause(err, NULL);  /* (sets __suppress_context__) */
    } else {
        Py_DECREF(exc);
    }
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(err)), err, PyException_GetTraceback(err)); /* steals */
    return NULL;
}

static PyObject *call(PyObject *fn, PyObject *args, PyObject *attrs) {
    if (attrs != NULL && PyDict_GET_SIZE(attrs) == 0)
        attrs = NULL;
    return PyObject_Call(fn, args, attrs);
}

/* ------------------------------------------------------------------ the exact NaN/inf check
 * finite(a) -> True / False / None: `events.finite` for a C-contiguous array or scalar that
 * exposes its memory (numpy, native byte order): a value is NaN or an infinity exactly when
 * its exponent bits are all ones, so one pass of masks and compares, which the compiler
 * vectorizes, says it (a numpy reduction costs about a microsecond of call alone on
 * a small array). None: not decided here (another layout or dtype, cupy): the Python check. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
/* (setuptools builds at -O2: no vector loops; and an AVX2 copy, chosen at load time where the
 * CPU has it, which checks twice the values per instruction) */
#define VECTORIZE __attribute__((optimize("O3"), target_clones("avx2", "default")))
#elif defined(__GNUC__) && !defined(__clang__)
#define VECTORIZE __attribute__((optimize("O3")))
#else
#define VECTORIZE
#endif
#define ALL_FINITE(name, T, MASK)                            \
    VECTORIZE static int name(const T *u, Py_ssize_t n) {    \
        T bad = 0;                                           \
        for (Py_ssize_t i = 0; i < n; i++)                   \
            bad |= (T)((u[i] & (MASK)) == (MASK));           \
        return !bad;                                         \
    }
ALL_FINITE(finite16, uint16_t, 0x7c00u)
ALL_FINITE(finite32, uint32_t, 0x7f800000u)
ALL_FINITE(finite64, uint64_t, 0x7ff0000000000000ull)

static PyObject *finite_check(PyObject *self, PyObject *a) {
    if (!PyObject_CheckBuffer(a))
        Py_RETURN_NONE;
    Py_buffer v;
    if (PyObject_GetBuffer(a, &v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    const char *f = v.format != NULL ? v.format : "B";
    int r = -1;
    if (!strcmp(f, "f") || !strcmp(f, "Zf"))
        r = v.itemsize && v.len % 4 == 0 ? finite32((const uint32_t *)v.buf, v.len / 4) : -1;
    else if (!strcmp(f, "d") || !strcmp(f, "Zd"))
        r = v.itemsize && v.len % 8 == 0 ? finite64((const uint64_t *)v.buf, v.len / 8) : -1;
    else if (!strcmp(f, "e"))
        r = v.itemsize && v.len % 2 == 0 ? finite16((const uint16_t *)v.buf, v.len / 2) : -1;
    else if (f[0] != '\0' && f[1] == '\0' && strchr("?bBhHiIlLqQ", f[0]) != NULL)
        r = 1; /* booleans and integers hold no NaN or inf */
    PyBuffer_Release(&v);
    if (r < 0)
        Py_RETURN_NONE;
    return PyBool_FromLong(r);
}

/* ------------------------------------------------------------------ summaries
 * summary(a) -> Summary or None: `events.summarize`'s CPU fast
 * path in one pass instead of six numpy calls, for a C-contiguous float32/float64 array in
 * native byte order whose values are all finite (None otherwise: a NaN or an inf, another
 * dtype or layout; the numpy path then decides). Sums are in float64, over vector lanes (the
 * order differs from numpy's pairwise sum and BLAS's dot by rounding only). */
#define SUMMARY_TAIL(T)                                                                           \
    for (; i < n; i++) {                                                                          \
        T v = x[i];                                                                               \
        double d = (double)v;                                                                     \
        bad |= v != v;                                                                            \
        mn = v < mn ? v : mn;                                                                     \
        mx = v > mx ? v : mx;                                                                     \
        ng += v < 0;                                                                              \
        zr += v == 0;                                                                             \
        sum += d;                                                                                 \
        sq += d * d;                                                                              \
    }                                                                                             \
    out[0] = (double)mn;                                                                          \
    out[1] = (double)mx;                                                                          \
    out[2] = sum;                                                                                 \
    out[3] = sq;                                                                                  \
    *neg = ng;                                                                                    \
    *zero = zr;                                                                                   \
    return !bad && isfinite(out[0]) && isfinite(out[1]);

#if defined(__SSE2__)
#include <emmintrin.h>
/* SSE2 (every x86-64): four floats (two doubles) per step; counts are kept per lane as
 * 32-bit integers, so they are folded every 2^20 steps */
static int summary32(const float *x, Py_ssize_t n, double *out, Py_ssize_t *neg, Py_ssize_t *zero) {
    float mn = x[0], mx = x[0];
    double sum = 0, sq = 0;
    Py_ssize_t ng = 0, zr = 0, i = 0;
    int bad = 0;
    __m128 vmn = _mm_set1_ps(x[0]), vmx = vmn, z = _mm_setzero_ps(), vbad = z;
    __m128d s0 = _mm_setzero_pd(), s1 = s0, q0 = s0, q1 = s0;
    while (i + 4 <= n) {
        __m128i cn = _mm_setzero_si128(), cz = cn;
        Py_ssize_t stop = n - i > (4 << 20) ? i + (4 << 20) : n;
        for (; i + 4 <= stop; i += 4) {
            __m128 v = _mm_loadu_ps(x + i);
            vbad = _mm_or_ps(vbad, _mm_cmpunord_ps(v, v));
            vmn = _mm_min_ps(vmn, v);
            vmx = _mm_max_ps(vmx, v);
            cn = _mm_sub_epi32(cn, _mm_castps_si128(_mm_cmplt_ps(v, z)));
            cz = _mm_sub_epi32(cz, _mm_castps_si128(_mm_cmpeq_ps(v, z)));
            __m128d lo = _mm_cvtps_pd(v), hi = _mm_cvtps_pd(_mm_movehl_ps(v, v));
            s0 = _mm_add_pd(s0, lo);
            s1 = _mm_add_pd(s1, hi);
            q0 = _mm_add_pd(q0, _mm_mul_pd(lo, lo));
            q1 = _mm_add_pd(q1, _mm_mul_pd(hi, hi));
        }
        int32_t c[4];
        _mm_storeu_si128((__m128i *)c, cn);
        ng += (Py_ssize_t)c[0] + c[1] + c[2] + c[3];
        _mm_storeu_si128((__m128i *)c, cz);
        zr += (Py_ssize_t)c[0] + c[1] + c[2] + c[3];
    }
    float f[4];
    _mm_storeu_ps(f, vmn);
    for (int k = 0; k < 4; k++)
        mn = f[k] < mn ? f[k] : mn;
    _mm_storeu_ps(f, vmx);
    for (int k = 0; k < 4; k++)
        mx = f[k] > mx ? f[k] : mx;
    bad = _mm_movemask_ps(vbad) != 0;
    double d[2];
    _mm_storeu_pd(d, _mm_add_pd(s0, s1));
    sum = d[0] + d[1];
    _mm_storeu_pd(d, _mm_add_pd(q0, q1));
    sq = d[0] + d[1];
    SUMMARY_TAIL(float)
}

static int summary64(const double *x, Py_ssize_t n, double *out, Py_ssize_t *neg, Py_ssize_t *zero) {
    double mn = x[0], mx = x[0], sum = 0, sq = 0;
    Py_ssize_t ng = 0, zr = 0, i = 0;
    int bad = 0;
    __m128d vmn = _mm_set1_pd(x[0]), vmx = vmn, z = _mm_setzero_pd(), vbad = z;
    __m128d s0 = z, s1 = z, q0 = z, q1 = z;
    __m128i cn = _mm_setzero_si128(), cz = cn; /* 64-bit lanes: no folding needed */
    for (; i + 4 <= n; i += 4) {
        __m128d a = _mm_loadu_pd(x + i), b = _mm_loadu_pd(x + i + 2);
        vbad = _mm_or_pd(vbad, _mm_or_pd(_mm_cmpunord_pd(a, a), _mm_cmpunord_pd(b, b)));
        vmn = _mm_min_pd(vmn, _mm_min_pd(a, b));
        vmx = _mm_max_pd(vmx, _mm_max_pd(a, b));
        cn = _mm_sub_epi64(cn, _mm_castpd_si128(_mm_cmplt_pd(a, z)));
        cn = _mm_sub_epi64(cn, _mm_castpd_si128(_mm_cmplt_pd(b, z)));
        cz = _mm_sub_epi64(cz, _mm_castpd_si128(_mm_cmpeq_pd(a, z)));
        cz = _mm_sub_epi64(cz, _mm_castpd_si128(_mm_cmpeq_pd(b, z)));
        s0 = _mm_add_pd(s0, a);
        s1 = _mm_add_pd(s1, b);
        q0 = _mm_add_pd(q0, _mm_mul_pd(a, a));
        q1 = _mm_add_pd(q1, _mm_mul_pd(b, b));
    }
    double d[2];
    _mm_storeu_pd(d, vmn);
    mn = d[0] < mn ? d[0] : mn;
    mn = d[1] < mn ? d[1] : mn;
    _mm_storeu_pd(d, vmx);
    mx = d[0] > mx ? d[0] : mx;
    mx = d[1] > mx ? d[1] : mx;
    bad = _mm_movemask_pd(vbad) != 0;
    int64_t c[2];
    _mm_storeu_si128((__m128i *)c, cn);
    ng = (Py_ssize_t)(c[0] + c[1]);
    _mm_storeu_si128((__m128i *)c, cz);
    zr = (Py_ssize_t)(c[0] + c[1]);
    _mm_storeu_pd(d, _mm_add_pd(s0, s1));
    sum = d[0] + d[1];
    _mm_storeu_pd(d, _mm_add_pd(q0, q1));
    sq = d[0] + d[1];
    SUMMARY_TAIL(double)
}
#else
#define SUMMARY(name, T)                                                                          \
    static int name(const T *x, Py_ssize_t n, double *out, Py_ssize_t *neg, Py_ssize_t *zero) {   \
        T mn = x[0], mx = x[0];                                                                   \
        double sum = 0, sq = 0;                                                                   \
        Py_ssize_t ng = 0, zr = 0, i = 0;                                                         \
        int bad = 0;                                                                              \
        SUMMARY_TAIL(T)                                                                           \
    }
SUMMARY(summary32, float)
SUMMARY(summary64, double)
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX2_PATH 1
/* AVX2 and FMA, where the CPU has them (checked once at run time): eight floats (four
 * doubles) per step, the same sums in float64 lanes as the SSE2 pass (the squares fused
 * into their sums: rounded once, not twice). The pass is bound by how many operations it
 * issues per element, so the float32 pass drops the NaN test: a NaN or an infinity among
 * float32 values makes the float64 sum NaN or infinite, which nothing finite can (2^31
 * float32 maxima sum to 7e47), and the tail then says "not decided" as before. */
__attribute__((target("avx2,fma"))) static int summary32_avx2(const float *x, Py_ssize_t n, double *out,
                                                              Py_ssize_t *neg, Py_ssize_t *zero) {
    float mn = x[0], mx = x[0];
    double sum = 0, sq = 0;
    Py_ssize_t ng = 0, zr = 0, i = 0;
    int bad = 0;
    __m256 vmn = _mm256_set1_ps(x[0]), vmx = vmn, z = _mm256_setzero_ps();
    __m256d s0 = _mm256_setzero_pd(), s1 = s0, q0 = s0, q1 = s0;
    while (i + 8 <= n) {
        __m256i cn = _mm256_setzero_si256(), cz = cn;
        Py_ssize_t stop = n - i > (8 << 20) ? i + (8 << 20) : n;
        for (; i + 8 <= stop; i += 8) {
            __m256 v = _mm256_loadu_ps(x + i);
            vmn = _mm256_min_ps(vmn, v);
            vmx = _mm256_max_ps(vmx, v);
            cn = _mm256_sub_epi32(cn, _mm256_castps_si256(_mm256_cmp_ps(v, z, _CMP_LT_OQ)));
            cz = _mm256_sub_epi32(cz, _mm256_castps_si256(_mm256_cmp_ps(v, z, _CMP_EQ_OQ)));
            __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
            s0 = _mm256_add_pd(s0, lo);
            s1 = _mm256_add_pd(s1, hi);
            q0 = _mm256_fmadd_pd(lo, lo, q0);
            q1 = _mm256_fmadd_pd(hi, hi, q1);
        }
        int32_t c[8];
        _mm256_storeu_si256((__m256i *)c, cn);
        for (int k = 0; k < 8; k++)
            ng += c[k];
        _mm256_storeu_si256((__m256i *)c, cz);
        for (int k = 0; k < 8; k++)
            zr += c[k];
    }
    float f[8];
    _mm256_storeu_ps(f, vmn);
    for (int k = 0; k < 8; k++)
        mn = f[k] < mn ? f[k] : mn;
    _mm256_storeu_ps(f, vmx);
    for (int k = 0; k < 8; k++)
        mx = f[k] > mx ? f[k] : mx;
    double d[4];
    _mm256_storeu_pd(d, _mm256_add_pd(s0, s1));
    sum = (d[0] + d[1]) + (d[2] + d[3]);
    _mm256_storeu_pd(d, _mm256_add_pd(q0, q1));
    sq = (d[0] + d[1]) + (d[2] + d[3]);
    bad = !isfinite(sum) || !isfinite(sq); /* (see above: a NaN or an inf in the vector part) */
    SUMMARY_TAIL(float)
}

__attribute__((target("avx2,fma"))) static int summary64_avx2(const double *x, Py_ssize_t n, double *out,
                                                              Py_ssize_t *neg, Py_ssize_t *zero) {
    double mn = x[0], mx = x[0], sum = 0, sq = 0;
    Py_ssize_t ng = 0, zr = 0, i = 0;
    int bad = 0;
    __m256d vmn = _mm256_set1_pd(x[0]), vmx = vmn, z = _mm256_setzero_pd(), vbad = z;
    __m256d s0 = z, s1 = z, q0 = z, q1 = z;
    __m256i cn = _mm256_setzero_si256(), cz = cn;
    for (; i + 8 <= n; i += 8) {
        __m256d a = _mm256_loadu_pd(x + i), b = _mm256_loadu_pd(x + i + 4);
        vbad = _mm256_or_pd(vbad, _mm256_or_pd(_mm256_cmp_pd(a, a, _CMP_UNORD_Q), _mm256_cmp_pd(b, b, _CMP_UNORD_Q)));
        vmn = _mm256_min_pd(vmn, _mm256_min_pd(a, b));
        vmx = _mm256_max_pd(vmx, _mm256_max_pd(a, b));
        cn = _mm256_sub_epi64(cn, _mm256_castpd_si256(_mm256_cmp_pd(a, z, _CMP_LT_OQ)));
        cn = _mm256_sub_epi64(cn, _mm256_castpd_si256(_mm256_cmp_pd(b, z, _CMP_LT_OQ)));
        cz = _mm256_sub_epi64(cz, _mm256_castpd_si256(_mm256_cmp_pd(a, z, _CMP_EQ_OQ)));
        cz = _mm256_sub_epi64(cz, _mm256_castpd_si256(_mm256_cmp_pd(b, z, _CMP_EQ_OQ)));
        s0 = _mm256_add_pd(s0, a);
        s1 = _mm256_add_pd(s1, b);
        q0 = _mm256_fmadd_pd(a, a, q0);
        q1 = _mm256_fmadd_pd(b, b, q1);
    }
    double d[4];
    _mm256_storeu_pd(d, vmn);
    for (int k = 0; k < 4; k++)
        mn = d[k] < mn ? d[k] : mn;
    _mm256_storeu_pd(d, vmx);
    for (int k = 0; k < 4; k++)
        mx = d[k] > mx ? d[k] : mx;
    bad = _mm256_movemask_pd(vbad) != 0;
    int64_t c[4];
    _mm256_storeu_si256((__m256i *)c, cn);
    ng = (Py_ssize_t)((c[0] + c[1]) + (c[2] + c[3]));
    _mm256_storeu_si256((__m256i *)c, cz);
    zr = (Py_ssize_t)((c[0] + c[1]) + (c[2] + c[3]));
    _mm256_storeu_pd(d, _mm256_add_pd(s0, s1));
    sum = (d[0] + d[1]) + (d[2] + d[3]);
    _mm256_storeu_pd(d, _mm256_add_pd(q0, q1));
    sq = (d[0] + d[1]) + (d[2] + d[3]);
    SUMMARY_TAIL(double)
}

static int g_avx2 = -1; /* whether the CPU has AVX2: asked once */

static int has_avx2(void) {
    if (g_avx2 < 0) {
        __builtin_cpu_init();
        g_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1 : 0;
    }
    return g_avx2;
}
#endif

static int g_no_avx2 = 0; /* set_wide(False): the narrower pass, as a CPU without AVX2 runs (tests) */

static PyObject *set_wide(PyObject *self, PyObject *on) {
    int v = PyObject_IsTrue(on);
    if (v < 0)
        return NULL;
    g_no_avx2 = !v;
#ifdef HAVE_AVX2_PATH
    return PyBool_FromLong(v && has_avx2());
#else
    return PyBool_FromLong(0);
#endif
}

/* 1 when `a` is decided here (out: min, max, sum, sumsq; its size, negatives and zeros), else 0 */
static int stats_of(PyObject *a, double *out, Py_ssize_t *n, Py_ssize_t *neg, Py_ssize_t *zero) {
    if (!PyObject_CheckBuffer(a))
        return 0;
    Py_buffer v;
    if (PyObject_GetBuffer(a, &v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        return 0;
    }
    const char *f = v.format != NULL ? v.format : "B";
    int ok = 0;
    int wide = 0;
#ifdef HAVE_AVX2_PATH
    wide = has_avx2() && !g_no_avx2;
#endif
    if (!strcmp(f, "f") && v.itemsize == 4 && v.len >= 4) {
        *n = v.len / 4;
#ifdef HAVE_AVX2_PATH
        if (wide)
            ok = summary32_avx2((const float *)v.buf, *n, out, neg, zero);
        else
#endif
            ok = summary32((const float *)v.buf, *n, out, neg, zero);
    } else if (!strcmp(f, "d") && v.itemsize == 8 && v.len >= 8) {
        *n = v.len / 8;
#ifdef HAVE_AVX2_PATH
        if (wide)
            ok = summary64_avx2((const double *)v.buf, *n, out, neg, zero);
        else
#endif
            ok = summary64((const double *)v.buf, *n, out, neg, zero);
    }
    (void)wide;
    PyBuffer_Release(&v);
    return ok;
}

static PyObject *g_summary_cls; /* events.Summary */
static PyObject *g_summary_py;  /* _dispatch._summary */

/* 1 when `a` is decided here, with its summary as a row (`events.SUMMARY_ROW`: size, nan,
 * neginf, posinf, neg, zero, pos; min, max, mean, std) in c and f, as `events.summarize`
 * computes them; else 0 (no error set) */
static int stats_row(PyObject *a, int64_t c[7], double f[4]) {
    double st[4];
    Py_ssize_t n = 0, neg = 0, zero = 0;
    if (!stats_of(a, st, &n, &neg, &zero))
        return 0;
    double mean = st[2] / (double)n, var = st[3] / (double)n - mean * mean;
    c[0] = n, c[1] = c[2] = c[3] = 0, c[4] = neg, c[5] = zero, c[6] = n - neg - zero;
    f[0] = st[0], f[1] = st[1], f[2] = mean, f[3] = sqrt(var < 0.0 ? 0.0 : var); /* (max(var, 0.0), as in summarize) */
    return 1;
}

/* The untracked Summary of what `stats_row` found, or NULL when `a` is not decided here (no
 * error set) */
static PyObject *fast_summary(PyObject *a) {
    int64_t c[7];
    double f[4];
    if (g_summary_cls == NULL || !stats_row(a, c, f))
        return NULL;
    PyTypeObject *cls = (PyTypeObject *)g_summary_cls;
    PyObject *s = cls->tp_alloc(cls, 11);
    if (s == NULL)
        return NULL;
    int bad = 0;
    for (int k = 0; k < 11; k++) {
        PyObject *item = k < 7 ? PyLong_FromLongLong(c[k]) : PyFloat_FromDouble(f[k - 7]);
        bad |= item == NULL;
        PyTuple_SET_ITEM(s, k, item != NULL ? item : Py_NewRef(Py_None));
    }
    if (bad) {
        Py_DECREF(s);
        return NULL;
    }
    PyObject_GC_UnTrack(s); /* numbers only (see untrack) */
    return s;
}

/* summary(a) -> Summary or None: `events.summarize`'s fast path (see fast_summary) */
static PyObject *summary_stats(PyObject *self, PyObject *a) {
    PyObject *s = fast_summary(a);
    return s != NULL || PyErr_Occurred() ? s : Py_NewRef(Py_None);
}

/* The summaries of an op's output (a tuple of one) or outputs as a summarized record carries
 * them: one bytes object of packed rows (`events.SUMMARY_ROW`: size, nan, neginf, posinf, neg,
 * zero, pos as int64, then min, max, mean, std as float64, little-endian; an output without a
 * summary: size -1), not a Summary and its eleven numbers per output. None when one counts a
 * NaN or an inf (the op becomes a full event). A new reference. */
static PyObject *summary_rows_of(PyObject *o) {
    int several = PyTuple_CheckExact(o), finite = 1;
    Py_ssize_t n = several ? PyTuple_GET_SIZE(o) : 1;
    PyObject *b = PyBytes_FromStringAndSize(NULL, n * 88);
    if (b == NULL)
        return NULL;
    char *p = PyBytes_AS_STRING(b);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *a = several ? PyTuple_GET_ITEM(o, i) : o;
        int64_t c[7] = {-1, 0, 0, 0, 0, 0, 0};
        double f[4] = {0.0, 0.0, 0.0, 0.0};
        /* (None: no summary; the C pass decides a finite float32/float64 array; anything else,
         * another dtype or layout or not finite, the Python summary) */
        if (a != Py_None && !(Py_IS_TYPE(a, (PyTypeObject *)g_ndarray) && stats_row(a, c, f))) {
            PyObject *s = PyErr_Occurred() ? NULL : PyObject_CallOneArg(g_summary_py, a);
            if (s == NULL) {
                Py_DECREF(b);
                return NULL;
            }
            if (PyTuple_Check(s) && PyTuple_GET_SIZE(s) == 11) {
                for (int k = 0; k < 7; k++)
                    c[k] = PyLong_AsLongLong(PyTuple_GET_ITEM(s, k));
                for (int k = 0; k < 4; k++)
                    f[k] = PyFloat_AsDouble(PyTuple_GET_ITEM(s, 7 + k));
                finite &= c[1] == 0 && c[2] == 0 && c[3] == 0;
            } /* (None: no dtype, no summary) */
            Py_DECREF(s);
            if (PyErr_Occurred()) {
                Py_DECREF(b);
                return NULL;
            }
        }
        memcpy(p + i * 88, c, 56);
        memcpy(p + i * 88 + 56, f, 32);
    }
    if (!finite) {
        Py_DECREF(b);
        return Py_NewRef(Py_None);
    }
    return b;
}

/* setup_summaries(Summary, _summary) */
static PyObject *setup_summaries(PyObject *self, PyObject *args) {
    PyObject *cls, *py;
    if (!PyArg_ParseTuple(args, "O!O", &PyType_Type, &cls, &py))
        return NULL;
    if (!PyType_IsSubtype((PyTypeObject *)cls, &PyTuple_Type) ||
        ((PyTypeObject *)cls)->tp_basicsize != PyTuple_Type.tp_basicsize) {
        PyErr_SetString(PyExc_TypeError, "setup_summaries: Summary must be a NamedTuple");
        return NULL;
    }
    keep(&g_summary_cls, cls);
    keep(&g_summary_py, py);
    Py_RETURN_NONE;
}

/* `_dispatch._all_finite(outs)` for a tuple of numpy arrays and None (a VJP's gradients):
 * True / False, or None (not decided here: an item of another kind; the Python one decides) */
static PyObject *all_finite(PyObject *outs) {
    Py_ssize_t n = PyTuple_GET_SIZE(outs);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = PyTuple_GET_ITEM(outs, i);
        if (o == Py_None)
            continue;
        if (!Py_IS_TYPE(o, (PyTypeObject *)g_ndarray))
            Py_RETURN_NONE;
        PyObject *ok = finite_check(NULL, o);
        if (ok != Py_True)
            return ok; /* False, or None: not decided here */
        Py_DECREF(ok);
    }
    Py_RETURN_TRUE;
}

/* ((callback, outputs), ...) of a listeners tuple, made once per tuple (STATE.listeners is
 * replaced, never mutated: the last one's is kept, with a reference to it, so its address
 * cannot be taken by another tuple while cached). `forget_calls`, called by every refresh
 * of STATE, drops it, so a closed listener's callback (a profile's buffer) is not kept
 * alive here. A new reference. */
static PyObject *g_calls_for, *g_calls;

/* STATE's fields that `dispatch` reads, as its last refresh left them: listeners, lean,
 * lean_checked, lean_summarized, quiet, plain, and whether a listener wants stacks. Every change
 * of STATE's listeners ends in a refresh (under STATE.lock) whose hooks end here
 * (`forget_calls`), so these are always one refresh's, and an observed op reads them without
 * an attribute lookup each (six of them cost an observed op about 60 ns; it costs 300). */
enum { ST_LISTENERS, ST_LEAN, ST_CHECKED, ST_SUMMARIZED, ST_QUIET, ST_PLAIN, N_ST };
static PyObject *g_st[N_ST];
static int g_st_stacks;

static int snapshot_state(void) {
    PyObject *names[N_ST] = {s_listeners, s_lean, s_checked, s_summarized, s_quiet, s_plain};
    PyObject *got[N_ST] = {NULL};
    for (int i = 0; i < N_ST; i++) {
        if ((got[i] = PyObject_GetAttr(g_state, names[i])) == NULL) {
            for (int j = 0; j < i; j++)
                Py_DECREF(got[j]);
            return -1;
        }
    }
    PyObject *want = PyObject_GetAttr(g_state, s_stacks);
    int w = want != NULL ? PyObject_IsTrue(want) : -1;
    Py_XDECREF(want);
    if (w < 0) {
        for (int j = 0; j < N_ST; j++)
            Py_DECREF(got[j]);
        return -1;
    }
    for (int i = 0; i < N_ST; i++) {
        PyObject *old = g_st[i];
        g_st[i] = got[i];
        Py_XDECREF(old);
    }
    g_st_stacks = w;
    return 0;
}

static PyObject *forget_calls(PyObject *self, PyObject *unused) {
    PyObject *old_for = g_calls_for, *old = g_calls;
    g_calls_for = g_calls = NULL;
    Py_XDECREF(old_for);
    Py_XDECREF(old);
    if (g_state != NULL && snapshot_state() < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *calls_of(PyObject *listeners) {
    if (listeners == g_calls_for && g_calls != NULL)
        return Py_NewRef(g_calls);
    Py_ssize_t n = PyTuple_GET_SIZE(listeners);
    PyObject *calls = PyTuple_New(n);
    if (calls == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *lis = PyTuple_GET_ITEM(listeners, i);
        PyObject *cb = PyObject_GetAttr(lis, s_callback);
        PyObject *wants = cb ? PyObject_GetAttr(lis, s_outputs) : NULL;
        PyObject *pair = wants ? PyTuple_Pack(2, cb, PyObject_IsTrue(wants) ? Py_True : Py_False) : NULL;
        Py_XDECREF(cb);
        Py_XDECREF(wants);
        if (pair == NULL) {
            Py_DECREF(calls);
            return NULL;
        }
        PyTuple_SET_ITEM(calls, i, pair);
    }
    PyObject *old_for = g_calls_for, *old = g_calls;
    g_calls_for = Py_NewRef(listeners);
    g_calls = Py_NewRef(calls);
    Py_XDECREF(old_for);
    Py_XDECREF(old);
    return calls;
}

/* threading.get_ident() as an int, the last one's object reused (ops come from one thread
 * at a time, mostly the same one; the GIL guards the two statics). A new reference. */
static unsigned long g_tid;
static PyObject *g_tid_obj;

static PyObject *thread_id(void) {
    unsigned long t = PyThread_get_thread_ident();
    if (g_tid_obj == NULL || t != g_tid) {
        PyObject *o = PyLong_FromUnsignedLong(t);
        if (o == NULL)
            return NULL;
        Py_XSETREF(g_tid_obj, o);
        g_tid = t;
    }
    return Py_NewRef(g_tid_obj);
}

/* (shape, dtype, nbytes) of one output, or None */
static PyObject *signature(PyObject *o) {
    if (o == Py_None)
        return Py_NewRef(Py_None);
    PyObject *shape = PyObject_GetAttr(o, s_shape);
    PyObject *dtype = shape ? PyObject_GetAttr(o, s_dtype) : NULL;
    PyObject *nbytes = dtype ? PyObject_GetAttr(o, s_nbytes) : NULL;
    PyObject *r = nbytes ? PyTuple_Pack(3, shape, dtype, nbytes) : NULL;
    Py_XDECREF(shape);
    Py_XDECREF(dtype);
    Py_XDECREF(nbytes);
    return r;
}

/* Records keep the shapes and signatures of their outputs, and a training loop makes the same
 * few over and over: each is replaced by the first equal one seen (bounded; cleared when full).
 * Equal tuples are interchangeable, and a fresh tuple freed at once is one the cyclic GC never
 * counts: kept, each was a young tracked object that every collection walked, about as much
 * as the records themselves cost a timing-only profile. A new reference; steals `t`. */
#define SHAPES_KEPT 4096
static PyObject *g_shapes;

static PyObject *shared(PyObject *t) {
    if (t == NULL || !PyTuple_CheckExact(t))
        return t;
    if (g_shapes == NULL && (g_shapes = PyDict_New()) == NULL) {
        Py_DECREF(t);
        return NULL;
    }
    PyObject *first = PyDict_SetDefault(g_shapes, t, t); /* borrowed */
    if (first == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError)) {
            Py_DECREF(t);
            return NULL;
        }
        PyErr_Clear(); /* an output whose shape cannot be hashed (not numpy's): kept as it is */
        return t;
    }
    Py_INCREF(first);
    Py_DECREF(t);
    if (PyDict_GET_SIZE(g_shapes) > SHAPES_KEPT)
        PyDict_Clear(g_shapes);
    return first;
}

/* `RUN.run or auto_run(t0)`: the calling thread's run, an eager step begun when it is outside
 * every run (a new reference) */
static PyObject *current_run(long long t0) {
    PyObject *run = PyObject_GetAttr(g_run, s_run);
    if (run == NULL)
        return NULL;
    int open = PyObject_IsTrue(run);
    if (open != 0) {
        if (open < 0)
            Py_CLEAR(run);
        return run;
    }
    Py_DECREF(run);
    PyObject *t = PyLong_FromLongLong(t0);
    if (t == NULL)
        return NULL;
    run = PyObject_CallOneArg(g_auto_run, t);
    Py_DECREF(t);
    return run;
}

/* ------------------------------------------------------------------ plain events
 * `STATE.plain`: every listener takes an OpEvent as it happens and none wants summaries,
 * values, cost estimates or the NaN/inf check (a timing listener that is not raw, the
 * debugger's per-run listener). The CPU op's OpEvent is then made here, what `_after`
 * makes for it: its TensorMetas from `Site.metas_of` (cached here per site and signature)
 * and its fields set by slot, as the run markers are (a dataclass's __init__ costs 3x). */
#define N_EV_FIELDS 21
static Py_ssize_t g_ev_off[N_EV_FIELDS]; /* OpEvent's slots' offsets (0: make none here) */
static PyObject *s_metas_of, *s_cpu_name, *s_graph_word, *s_tf_name, *g_ev_zero;
static PyObject *s_name;    /* (defined with the naming below) */
static PyObject *g_opevent; /* (defined with `untrack` below) */
static void slot_offsets(PyObject *cls, Py_ssize_t n, Py_ssize_t *off);

#define METAS_KEPT 4096
typedef struct {
    PyObject *site, *shape, *dtype, *metas; /* strong references; site NULL: empty */
    long long nbytes;
} MetaSlot;
static MetaSlot g_metas[METAS_KEPT];

/* the TensorMetas of `site`'s outputs of that signature (a new reference) */
static PyObject *metas_for(PyObject *site, PyObject *shape, PyObject *dtype, PyObject *nbytes) {
    long long nb = PyLong_AsLongLong(nbytes);
    if (nb == -1 && PyErr_Occurred())
        return NULL;
    Py_uhash_t h = ((Py_uhash_t)(uintptr_t)site * 1000003u) ^ ((Py_uhash_t)(uintptr_t)shape * 31u) ^
                   ((Py_uhash_t)(uintptr_t)dtype * 131u) ^ (Py_uhash_t)nb;
    MetaSlot *m = &g_metas[(h ^ (h >> 17)) & (METAS_KEPT - 1)];
    if (m->site == site && m->shape == shape && m->dtype == dtype && m->nbytes == nb)
        return Py_NewRef(m->metas);
    PyObject *metas = PyObject_CallMethodObjArgs(site, s_metas_of, shape, dtype, nbytes, s_cpu_name, NULL);
    if (metas == NULL)
        return NULL;
    Py_XSETREF(m->site, Py_NewRef(site));
    Py_XSETREF(m->shape, Py_NewRef(shape));
    Py_XSETREF(m->dtype, Py_NewRef(dtype));
    Py_XSETREF(m->metas, Py_NewRef(metas));
    m->nbytes = nb;
    return metas;
}

/* the event's op type: `Site.op_label` (a new reference) */
static PyObject *op_label(PyObject *site) {
    PyObject *label = PyTuple_GET_ITEM(site, 3);
    if (label != Py_None && PyObject_IsTrue(label))
        return Py_NewRef(label);
    PyObject *mode = PyTuple_GET_ITEM(site, 2);
    int graph = PyUnicode_Check(mode) && PyUnicode_Compare(mode, s_graph_word) == 0;
    return PyObject_GetAttr(PyTuple_GET_ITEM(site, 0), graph ? s_tf_name : s_name);
}

/* the OpEvent `_after` makes for a CPU op that nobody wants more of (borrowed parts) */
static PyObject *plain_event(PyObject *site, PyObject *seq, PyObject *run, long long t0, long long t1, PyObject *tid,
                             PyObject *stack, PyObject *shape, PyObject *dtype, PyObject *nbytes) {
    PyObject *metas = metas_for(site, shape, dtype, nbytes);
    PyObject *label = metas ? op_label(site) : NULL;
    PyObject *t0o = label ? PyLong_FromLongLong(t0) : NULL, *t1o = t0o ? PyLong_FromLongLong(t1) : NULL;
    PyTypeObject *cls = (PyTypeObject *)g_opevent;
    PyObject *e = t1o ? cls->tp_alloc(cls, 0) : NULL;
    if (e == NULL) {
        Py_XDECREF(metas);
        Py_XDECREF(label);
        Py_XDECREF(t0o);
        Py_XDECREF(t1o);
        return NULL;
    }
    PyObject *name = PyTuple_GET_ITEM(site, 4);
    if (name == Py_None || !PyObject_IsTrue(name))
        name = label;
    PyObject *v[N_EV_FIELDS] = {
        seq, run, PyTuple_GET_ITEM(site, 2), PyTuple_GET_ITEM(site, 1), label, name, PyTuple_GET_ITEM(site, 5),
        metas, t0o, t1o, tid, s_cpu_name, g_ev_zero, PyTuple_GET_ITEM(site, 8), PyTuple_GET_ITEM(site, 9),
        PyTuple_GET_ITEM(site, 11), stack, Py_None, Py_None, Py_None, Py_None};
    for (int i = 0; i < N_EV_FIELDS; i++)
        *(PyObject **)((char *)e + g_ev_off[i]) = Py_NewRef(v[i]);
    Py_DECREF(metas);
    Py_DECREF(label);
    Py_DECREF(t0o);
    Py_DECREF(t1o);
    /* (as `_untrack`: an event without arrays refers to nothing that refers back to it) */
    if (PyObject_GC_IsTracked(e))
        PyObject_GC_UnTrack(e);
    return e;
}

typedef struct ColumnQueue ColumnQueue;
static PyTypeObject ColumnQueueType;
static int colq_push(ColumnQueue *q, PyObject *site, long long seq, PyObject *run, long long t0, long long t1,
                     PyObject *tid, PyObject *stack, PyObject *shape, PyObject *dtype, PyObject *nbytes,
                     PyObject *summ);

/* the raw record (site, seq, run, t0, t1, thread, stack, shape, dtype, nbytes[, summary rows])
 * of `_dispatch._record`, from its parts (borrowed; summ NULL: not summarized) */
static PyObject *make_record(PyObject *site, PyObject *seq, PyObject *run, long long t0, long long t1, PyObject *tid,
                             PyObject *stack, PyObject *shape, PyObject *dtype, PyObject *nbytes, PyObject *summ) {
    PyObject *t0o = PyLong_FromLongLong(t0), *t1o = PyLong_FromLongLong(t1);
    PyObject *rec = t0o && t1o ? PyTuple_New(summ != NULL ? 11 : 10) : NULL;
    if (rec == NULL) {
        Py_XDECREF(t0o);
        Py_XDECREF(t1o);
        return NULL;
    }
    PyTuple_SET_ITEM(rec, 0, Py_NewRef(site));
    PyTuple_SET_ITEM(rec, 1, Py_NewRef(seq));
    PyTuple_SET_ITEM(rec, 2, Py_NewRef(run));
    PyTuple_SET_ITEM(rec, 3, t0o);
    PyTuple_SET_ITEM(rec, 4, t1o);
    PyTuple_SET_ITEM(rec, 5, Py_NewRef(tid));
    PyTuple_SET_ITEM(rec, 6, Py_NewRef(stack));
    PyTuple_SET_ITEM(rec, 7, Py_NewRef(shape));
    PyTuple_SET_ITEM(rec, 8, Py_NewRef(dtype));
    PyTuple_SET_ITEM(rec, 9, Py_NewRef(nbytes));
    if (summ != NULL)
        PyTuple_SET_ITEM(rec, 10, Py_NewRef(summ)); /* (summarized: see `_dispatch._record`) */
    /* A record refers to a shared Site and stack, numbers, a shape and a dtype: nothing that can
     * refer back to it, so it needs no cyclic GC (a leak would need a garbage cycle reachable
     * from a Site: from module globals, i.e. not garbage). Tracked, a profile's or recording's
     * thousands of records would each count toward the next full collection of the process. */
    PyObject_GC_UnTrack(rec);
    return rec;
}

/* an observed op on the CPU: run and timed here; then the record (`lean`: every listener takes
 * one and nothing else) or, for everything else, `_dispatch._after` in Python */
static PyObject *observed_cpu(PyObject *site, PyObject *fn, PyObject *args, PyObject *arrays, PyObject *attrs,
                              PyObject *listeners, int is_lean) {
    long long t0 = now_ns();
    PyObject *out = call(fn, args, attrs);
    if (out == NULL)
        return fail(site, arrays, attrs);
    long long t1 = now_ns();
    PyObject *rec = NULL, *seq = NULL, *run = NULL, *tid = NULL, *shape = NULL, *dtype = NULL, *nbytes = NULL;
    PyObject *stack = NULL, *summ = NULL;
    if (is_lean == 2 || is_lean == 4) { /* records (4: nothing), once the output passes the exact NaN/inf check */
        PyObject *o = out;
        if (PyObject_IsTrue(PyTuple_GET_ITEM(site, F_SAVES)) && PyTuple_Check(out) && PyTuple_GET_SIZE(out) > 0)
            o = PyTuple_GET_ITEM(out, 0);
        PyObject *ok = PyTuple_CheckExact(o) ? all_finite(o) : finite_check(NULL, o);
        if (ok == Py_None) {
            Py_DECREF(ok);
            ok = NULL;
        }
        if (ok == NULL && !PyErr_Occurred())
            ok = PyObject_CallOneArg(PyTuple_CheckExact(o) ? g_all_finite : g_finite, o);
        if (ok == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        int fine = PyObject_IsTrue(ok);
        Py_DECREF(ok);
        if (fine < 0) {
            Py_DECREF(out);
            return NULL;
        }
        if (fine && is_lean == 4) { /* nobody wants a finite op (`only_nonfinite`): it still begins a step */
            PyObject *run = current_run(t0);
            if (run == NULL) {
                Py_DECREF(out);
                return NULL;
            }
            Py_DECREF(run);
            return out;
        }
        is_lean = fine; /* a failure: `_after` makes the full event (and checks again) */
    }
    if (is_lean == 3) { /* records carrying the outputs' summaries, when all are finite */
        PyObject *o = out;
        if (PyObject_IsTrue(PyTuple_GET_ITEM(site, F_SAVES)) && PyTuple_Check(out) && PyTuple_GET_SIZE(out) > 0)
            o = PyTuple_GET_ITEM(out, 0);
#if PY_LITTLE_ENDIAN
        summ = g_summary_cls != NULL ? summary_rows_of(o) : Py_NewRef(Py_None);
#else
        summ = Py_NewRef(Py_None); /* (rows are little-endian: `_after` packs them) */
#endif
        if (summ == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        if (summ == Py_None) { /* not finite: `_after` makes the full event (and summarizes again) */
            Py_CLEAR(summ);
            is_lean = 0;
        }
    }
    if (!is_lean) {
        seq = PyIter_Next(g_seq);
        PyObject *t0o = PyLong_FromLongLong(t0), *t1o = PyLong_FromLongLong(t1);
        PyObject *r = NULL;
        if (seq != NULL && t0o != NULL && t1o != NULL)
            r = PyObject_CallFunctionObjArgs(g_after, site, args, arrays, attrs ? attrs : g_noattrs, out, t0o, t1o,
                                             seq, NULL);
        Py_XDECREF(t0o);
        Py_XDECREF(t1o);
        Py_XDECREF(seq);
        Py_DECREF(out);
        return r;
    }
    stack = Py_NewRef(PyTuple_GET_ITEM(site, F_STACK));
    if (stack == Py_None && g_st_stacks) {
        Py_DECREF(stack);
        stack = PyObject_CallNoArgs(g_stack_here);
        if (stack == NULL)
            goto error;
    }
    PyObject *o = out; /* borrowed */
    if (PyObject_IsTrue(PyTuple_GET_ITEM(site, F_SAVES))) {
        o = PyTuple_Check(out) && PyTuple_GET_SIZE(out) > 0 ? PyTuple_GET_ITEM(out, 0) : NULL;
        if (o == NULL) {
            PyErr_SetString(PyExc_TypeError, "an op that saves must return (output, residuals)");
            goto error;
        }
    }
    seq = PyIter_Next(g_seq);
    if (seq == NULL)
        goto error;
    run = current_run(t0);
    if (run == NULL)
        goto error;
    tid = thread_id();
    if (tid == NULL)
        goto error;
    if (!PyTuple_CheckExact(o)) {
        shape = shared(PyObject_GetAttr(o, s_shape));
        if (shape == NULL || (dtype = PyObject_GetAttr(o, s_dtype)) == NULL ||
            (nbytes = PyObject_GetAttr(o, s_nbytes)) == NULL)
            goto error;
    } else {
        Py_ssize_t n = PyTuple_GET_SIZE(o);
        shape = Py_NewRef(Py_None);
        nbytes = PyLong_FromLong(0);
        dtype = PyTuple_New(n);
        if (nbytes == NULL || dtype == NULL)
            goto error;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *sig = signature(PyTuple_GET_ITEM(o, i));
            if (sig == NULL)
                goto error;
            PyTuple_SET_ITEM(dtype, i, sig);
        }
        if ((dtype = shared(dtype)) == NULL)
            goto error;
    }
    PyObject *calls = calls_of(listeners);
    if (calls == NULL)
        goto error;
    Py_ssize_t n = PyTuple_GET_SIZE(calls);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyTuple_GET_ITEM(calls, i);
        PyObject *cb = PyTuple_GET_ITEM(pair, 0);
        int with_out = PyTuple_GET_ITEM(pair, 1) == Py_True; /* `outputs=True`: callback(record, output) */
        if (!with_out && is_lean != 5 && Py_IS_TYPE(cb, &ColumnQueueType)) { /* a recording's queue: no record made */
            long long sq = PyLong_AsLongLong(seq);
            if ((sq == -1 && PyErr_Occurred()) ||
                colq_push((ColumnQueue *)cb, site, sq, run, t0, t1, tid, stack, shape, dtype, nbytes, summ) < 0) {
                Py_DECREF(calls);
                goto error;
            }
            continue;
        }
        if (rec == NULL &&
            (rec = is_lean == 5 ? plain_event(site, seq, run, t0, t1, tid, stack, shape, dtype, nbytes)
                                : make_record(site, seq, run, t0, t1, tid, stack, shape, dtype, nbytes, summ)) == NULL) {
            Py_DECREF(calls);
            goto error;
        }
        PyObject *r = with_out ? PyObject_CallFunctionObjArgs(cb, rec, o, NULL) : PyObject_CallOneArg(cb, rec);
        if (r == NULL) {
            Py_DECREF(calls);
            goto error;
        }
        Py_DECREF(r);
    }
    Py_DECREF(calls);
    Py_XDECREF(rec);
    Py_XDECREF(summ);
    Py_XDECREF(stack);
    Py_XDECREF(seq);
    Py_XDECREF(run);
    Py_XDECREF(tid);
    Py_XDECREF(shape);
    Py_XDECREF(dtype);
    Py_XDECREF(nbytes);
    return out;
error:
    Py_XDECREF(summ);
    Py_XDECREF(stack);
    Py_XDECREF(rec);
    Py_XDECREF(seq);
    Py_XDECREF(run);
    Py_XDECREF(tid);
    Py_XDECREF(shape);
    Py_XDECREF(dtype);
    Py_XDECREF(nbytes);
    Py_DECREF(out);
    return NULL;
}

/* dispatch(site, fn, args, arrays, attrs={}): see `_dispatch.dispatch_py` */
static PyObject *dispatch(PyObject *self, PyObject *const *a, Py_ssize_t nargs) {
    if (nargs < 4 || nargs > 5) {
        PyErr_SetString(PyExc_TypeError, "dispatch(site, fn, args, arrays, attrs={})");
        return NULL;
    }
    PyObject *site = a[0], *fn = a[1], *args = a[2], *arrays = a[3];
    PyObject *attrs = nargs == 5 ? a[4] : NULL;
    if (!PyTuple_Check(args) || !PyTuple_Check(arrays) || (attrs != NULL && !PyDict_Check(attrs)) ||
        !PyTuple_Check(site) || PyTuple_GET_SIZE(site) < N_FIELDS) {
        PyErr_SetString(PyExc_TypeError, "dispatch: site must be a Site, args and arrays tuples, attrs a dict");
        return NULL;
    }
    if (g_state == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "tracetensor._speedups.setup() was not called");
        return NULL;
    }
    PyObject *listeners = g_st[ST_LISTENERS]; /* (STATE's, as its last refresh left them: see snapshot_state) */
    PyObject *r;
    if (listeners == NULL || !PyTuple_Check(listeners) || PyTuple_GET_SIZE(listeners) == 0) {
        r = call(fn, args, attrs);
        return r != NULL ? r : fail(site, arrays, attrs);
    }
    Py_INCREF(listeners); /* (a callback may subscribe or close a listener: the snapshot moves on) */
    /* here only on the CPU: a site placed there, or an unnamed site on numpy arrays (an
     * unnamed site on anything else may be on a GPU: `_observed` places it) */
    PyObject *dev = PyTuple_GET_ITEM(site, F_DEVICE);
    int cpu = dev == g_cpu || (dev == Py_None && (PyTuple_GET_SIZE(arrays) == 0 ||
                                                   Py_IS_TYPE(PyTuple_GET_ITEM(arrays, 0), (PyTypeObject *)g_ndarray)));
    int is_lean = g_st[ST_LEAN] == listeners;
    if (!is_lean)
        is_lean = g_st[ST_CHECKED] == listeners ? 2 : 0;
    if (!is_lean)
        is_lean = g_st[ST_SUMMARIZED] == listeners ? 3 : 0;
    if ((is_lean == 2 || !is_lean) && g_st[ST_QUIET] == listeners) /* only `only_nonfinite` listeners: a finite op reaches nobody */
        is_lean = 4;
    if (!is_lean && cpu && g_ev_off[0] > 0 && g_st[ST_PLAIN] == listeners) /* every listener takes a plain OpEvent: made here */
        is_lean = 5;
    if (cpu)
        r = observed_cpu(site, fn, args, arrays, attrs, listeners, is_lean);
    else
        r = PyObject_CallFunctionObjArgs(g_observed, site, fn, args, arrays, attrs ? attrs : g_noattrs, NULL);
    Py_DECREF(listeners);
    return r;
}


/* setup(STATE, RUN, _SEQ, auto_run, _observed, _after, stack_here, finite, _all_finite, numpy.ndarray,
 * CPU, _NOATTRS): what the paths read */
static PyObject *setup(PyObject *self, PyObject *args) {
    PyObject *st, *run, *seq, *ar, *obs, *after, *sh, *fin, *afin, *nd, *cpu, *noattrs;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOOO!", &st, &run, &seq, &ar, &obs, &after, &sh, &fin, &afin, &nd, &cpu,
                          &PyDict_Type, &noattrs))
        return NULL;
    if (!PyType_Check(nd)) {
        PyErr_SetString(PyExc_TypeError, "setup: ndarray must be a type");
        return NULL;
    }
    keep(&g_state, st);
    if (snapshot_state() < 0)
        return NULL;
    keep(&g_run, run);
    keep(&g_seq, seq);
    keep(&g_auto_run, ar);
    keep(&g_observed, obs);
    keep(&g_after, after);
    keep(&g_finite, fin);
    keep(&g_all_finite, afin);
    keep(&g_stack_here, sh);
    keep(&g_ndarray, nd);
    keep(&g_cpu, cpu);
    keep(&g_noattrs, noattrs);
    Py_RETURN_NONE;
}


/* ------------------------------------------------------------------ the user's stack
 * `_source.user_frames()` and `_source.stack_here()` (read them first): the same walk and the
 * same caches (the dicts are `_source`'s own), with the frames looked at from C. A miss
 * (a new instruction, a new caller) calls `_source._walk` as the Python path does. Python
 * 3.11 and later (PyFrame_GetLasti); on 3.10 the Python functions stay. */
#if PY_VERSION_HEX >= 0x030B0000
static PyObject *g_internal_cache, *g_is_internal, *g_frames, *g_chains, *g_walk, *g_empty;
/* The stack a framework call holds and that call's frame (`_source._Held`), per thread, in C
 * thread-specific storage: an attribute of a threading.local costs about 45 ns to read or
 * set, and a hold with its release took seven (a small MLP's step holds four times). Each
 * slot owns a reference (NULL: nothing held), as the threading.local did: a release that never
 * comes (a KeyboardInterrupt between `hold()` and the caller's `try`) leaves a stale pair, not
 * a dangling one. */
static Py_tss_t g_held_stack = Py_tss_NEEDS_INIT, g_held_frame = Py_tss_NEEDS_INIT;

/* the held pair := (st, fr), new references taken (NULL or None: nothing); 0, or -1 with an error */
static int set_held(PyObject *st, PyObject *fr) {
    PyObject *old_st = (PyObject *)PyThread_tss_get(&g_held_stack), *old_fr = (PyObject *)PyThread_tss_get(&g_held_frame);
    st = st == Py_None ? NULL : st;
    fr = fr == Py_None ? NULL : fr;
    if (PyThread_tss_set(&g_held_stack, st) != 0 || PyThread_tss_set(&g_held_frame, fr) != 0) {
        PyThread_tss_set(&g_held_stack, old_st);
        PyThread_tss_set(&g_held_frame, old_fr);
        PyErr_NoMemory();
        return -1;
    }
    Py_XINCREF(st);
    Py_XINCREF(fr);
    Py_XDECREF(old_st);
    Py_XDECREF(old_fr);
    return 0;
}
static PyObject *s_run_code, *s_runpy;

/* 1: a framework code's frame (skipped), 0: the user's, -1: error */
static int is_internal_code(PyCodeObject *co) {
    PyObject *fn = co->co_filename;
    PyObject *r = PyDict_GetItemWithError(g_internal_cache, fn);
    if (r != NULL)
        return PyObject_IsTrue(r);
    if (PyErr_Occurred())
        return -1;
    r = PyObject_CallOneArg(g_is_internal, fn);
    int v = r ? PyObject_IsTrue(r) : -1;
    Py_XDECREF(r);
    return v;
}

static int is_internal(PyFrameObject *f) {
    PyCodeObject *co = PyFrame_GetCode(f);
    int v = is_internal_code(co);
    Py_DECREF(co);
    return v;
}

/* 1: runpy's `_run_code`, our launcher's frame: the user's stack ends below it (see `_walk`) */
static int is_launcher(PyCodeObject *co) {
    if (co->co_name != s_run_code &&
        (PyUnicode_GET_LENGTH(co->co_name) != 9 || PyUnicode_Compare(co->co_name, s_run_code) != 0))
        return 0;
    return PyUnicode_Find(co->co_filename, s_runpy, 0, PY_SSIZE_T_MAX, 1) >= 0;
}

/* the first user frame from f up (f itself included), a new reference; NULL and no error: none */
static PyFrameObject *first_user(PyFrameObject *f) {
    Py_XINCREF(f);
    while (f != NULL) {
        int r = is_internal(f);
        if (r < 0) {
            Py_DECREF(f);
            return NULL;
        }
        if (!r)
            return f;
        PyFrameObject *b = PyFrame_GetBack(f);
        Py_DECREF(f);
        f = b;
    }
    return NULL;
}

static PyObject *walk(PyFrameObject *f, int limit) {
    PyObject *lim = PyLong_FromLong(limit);
    if (lim == NULL)
        return NULL;
    PyObject *r = PyObject_CallFunctionObjArgs(g_walk, (PyObject *)f, lim, g_internal_cache, g_frames, NULL);
    Py_DECREF(lim);
    return r;
}

/* The stacks last made, by what decides them: the code and instruction of each of their user
 * frames (the same key as `_source._chains`, whose dict a miss here looks in; see
 * `_source.user_frames`), compared field by field here, where building that key (a tuple of
 * ints) and looking it up would cost most of a capture. Not by the frames themselves: a
 * call's frames are freed when it returns, and the next call's often sit at the same
 * addresses, stopped at the same lines but called from somewhere else. Direct-mapped; the
 * codes and the stack are held (strong references), so a code address seen here cannot be
 * another code's while its entry lives. */
#define STACK_DEPTH 8 /* user frames in a stack: `user_frames`' limit */
typedef struct {
    PyObject *stack; /* NULL: empty */
    PyCodeObject *codes[STACK_DEPTH];
    int lastis[STACK_DEPTH];
    int n;
} stack_entry;
#define STACK_CACHE 512 /* a power of two */
static stack_entry stack_cache[STACK_CACHE];

static PyObject *user_frames_from(PyFrameObject *start) {
    PyCodeObject *codes[STACK_DEPTH];
    int lastis[STACK_DEPTH], n = 0;
    PyFrameObject *x = start, *first = NULL;
    PyObject *result = NULL, *key = NULL;
    Py_XINCREF(x);
    while (x != NULL && n < STACK_DEPTH) { /* the user frames from here up, as `_walk` finds them */
        PyCodeObject *co = PyFrame_GetCode(x);
        int r = is_internal_code(co);
        if (r < 0) {
            Py_DECREF(co);
            goto done;
        }
        if (!r) {
            if (is_launcher(co)) {
                Py_DECREF(co);
                break;
            }
            if (first == NULL)
                first = (PyFrameObject *)Py_NewRef(x);
            codes[n] = co; /* (a reference: given back at the end) */
            lastis[n++] = PyFrame_GetLasti(x);
        } else {
            Py_DECREF(co);
        }
        PyFrameObject *b = PyFrame_GetBack(x);
        Py_DECREF(x);
        x = b;
    }
    if (n == 0) {
        result = Py_NewRef(g_empty);
        goto done;
    }
    size_t h = (size_t)n;
    for (int i = 0; i < n; i++)
        h = h * 1000003u ^ (((size_t)codes[i] >> 4) * 31u + (size_t)lastis[i]);
    stack_entry *ent = &stack_cache[(h ^ (h >> 13)) & (STACK_CACHE - 1)];
    if (ent->stack != NULL && ent->n == n) {
        int same = 1;
        for (int i = 0; i < n && same; i++)
            same = ent->codes[i] == codes[i] && ent->lastis[i] == lastis[i];
        if (same) {
            result = Py_NewRef(ent->stack);
            goto done;
        }
    }
    key = PyTuple_New(2 * n);
    if (key == NULL)
        goto done;
    for (int i = 0; i < n; i++) {
        PyObject *id = PyLong_FromVoidPtr(codes[i]), *li = id ? PyLong_FromLong(lastis[i]) : NULL;
        if (li == NULL) {
            Py_XDECREF(id);
            goto done;
        }
        PyTuple_SET_ITEM(key, 2 * i, id);
        PyTuple_SET_ITEM(key, 2 * i + 1, li);
    }
    PyObject *hit = PyDict_GetItemWithError(g_chains, key); /* borrowed: (codes, stack) */
    if (hit != NULL && PyTuple_CheckExact(hit) && PyTuple_GET_SIZE(hit) == 2 &&
        PyTuple_CheckExact(PyTuple_GET_ITEM(hit, 1))) {
        result = Py_NewRef(PyTuple_GET_ITEM(hit, 1));
    } else if (!PyErr_Occurred()) { /* first time along these frames: the Python walk makes the stack */
        PyObject *list = walk(first, STACK_DEPTH);
        result = list ? PySequence_Tuple(list) : NULL;
        Py_XDECREF(list);
        PyObject *held = result ? PyTuple_New(n) : NULL; /* (the entry holds the codes its key names) */
        if (held == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        for (int i = 0; i < n; i++)
            PyTuple_SET_ITEM(held, i, Py_NewRef((PyObject *)codes[i]));
        PyObject *entry = PyTuple_Pack(2, held, result);
        Py_DECREF(held);
        if (entry != NULL && PyDict_GET_SIZE(g_chains) > 10000)
            PyDict_Clear(g_chains);
        if (entry == NULL || PyDict_SetItem(g_chains, key, entry) < 0)
            Py_CLEAR(result);
        Py_XDECREF(entry);
    }
    if (result != NULL && PyTuple_GET_SIZE(result) > 0) {
        Py_XSETREF(ent->stack, Py_NewRef(result));
        for (int i = 0; i < STACK_DEPTH; i++)
            Py_XSETREF(ent->codes[i], i < n ? (PyCodeObject *)Py_NewRef(codes[i]) : NULL);
        memcpy(ent->lastis, lastis, sizeof lastis);
        ent->n = n;
    }
done:
    Py_XDECREF(x);
    Py_XDECREF(first);
    Py_XDECREF(key);
    for (int i = 0; i < n; i++)
        Py_DECREF(codes[i]);
    return result;
}

/* user_frames(limit=8): other limits go to the Python walk (`_source._walk`) */
static PyObject *user_frames(PyObject *self, PyObject *const *a, Py_ssize_t nargs) {
    PyFrameObject *f = PyEval_GetFrame(); /* borrowed: our caller's frame */
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "user_frames(limit=8)");
        return NULL;
    }
    long limit = nargs == 1 ? PyLong_AsLong(a[0]) : 8;
    if (limit == -1 && PyErr_Occurred())
        return NULL;
    if (limit != 8) {
        PyFrameObject *u = first_user(f);
        if (u == NULL)
            return PyErr_Occurred() ? NULL : Py_NewRef(g_empty);
        PyObject *list = walk(u, (int)limit);
        Py_DECREF(u);
        PyObject *r = list ? PySequence_Tuple(list) : NULL;
        Py_XDECREF(list);
        return r;
    }
    return user_frames_from(f);
}

/* stack_here(): the held stack when only framework frames lie between here and its frame */
static PyObject *stack_here(PyObject *self, PyObject *unused) {
    PyObject *held = PyThread_tss_is_created(&g_held_stack) ? (PyObject *)PyThread_tss_get(&g_held_stack) : NULL;
    if (held != NULL) {
        PyObject *target = (PyObject *)PyThread_tss_get(&g_held_frame);
        PyFrameObject *f = PyEval_GetFrame();
        Py_XINCREF(f);
        while (f != NULL) {
            if ((PyObject *)f == target) {
                Py_DECREF(f);
                return Py_NewRef(held);
            }
            int r = is_internal(f);
            if (r < 0) {
                Py_DECREF(f);
                return NULL;
            }
            if (!r)
                break; /* user code in between (a callable the call was given): capture here */
            PyFrameObject *b = PyFrame_GetBack(f);
            Py_DECREF(f);
            f = b;
        }
        Py_XDECREF(f);
    }
    return user_frames_from(PyEval_GetFrame());
}

/* hold() and release(outer): see `_source.hold`. A library layer's call, a backward pass and an
 * optimizer step each hold the user's stack for the ops under them. */
static PyObject *hold(PyObject *self, PyObject *unused) {
    if (!PyThread_tss_is_created(&g_held_stack)) {
        PyErr_SetString(PyExc_RuntimeError, "tracetensor._speedups.setup_stacks() was not called");
        return NULL;
    }
    PyObject *st = (PyObject *)PyThread_tss_get(&g_held_stack), *fr = (PyObject *)PyThread_tss_get(&g_held_frame);
    PyObject *now = stack_here(NULL, NULL);
    if (now == NULL)
        return NULL;
    PyObject *outer = PyTuple_Pack(3, st != NULL ? st : Py_None, fr != NULL ? fr : Py_None, now);
    Py_DECREF(now);
    /* (the holding call's frame: the Python code that called this) */
    if (outer == NULL || set_held(PyTuple_GET_ITEM(outer, 2), (PyObject *)PyEval_GetFrame()) < 0) {
        Py_XDECREF(outer);
        return NULL;
    }
    return outer;
}

static PyObject *release(PyObject *self, PyObject *outer) {
    if (!PyTuple_CheckExact(outer) || PyTuple_GET_SIZE(outer) != 3) {
        PyErr_SetString(PyExc_TypeError, "release(outer): what hold() returned");
        return NULL;
    }
    if (set_held(PyTuple_GET_ITEM(outer, 0), PyTuple_GET_ITEM(outer, 1)) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* setup_stacks(_internal_cache, _is_internal, _frames, _chains, _walk) */
static PyObject *setup_stacks(PyObject *self, PyObject *args) {
    PyObject *ic, *ii, *fr, *ou, *wa;
    if (!PyArg_ParseTuple(args, "O!OO!O!O", &PyDict_Type, &ic, &ii, &PyDict_Type, &fr, &PyDict_Type, &ou, &wa))
        return NULL;
    keep(&g_internal_cache, ic);
    keep(&g_is_internal, ii);
    keep(&g_frames, fr);
    keep(&g_chains, ou);
    if (s_run_code == NULL && ((s_run_code = PyUnicode_InternFromString("_run_code")) == NULL ||
                               (s_runpy = PyUnicode_InternFromString("runpy")) == NULL))
        return NULL;
    keep(&g_walk, wa);
    if (!PyThread_tss_is_created(&g_held_stack) &&
        (PyThread_tss_create(&g_held_stack) != 0 || PyThread_tss_create(&g_held_frame) != 0))
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}
#endif

static PyObject *g_opevent; /* events.OpEvent */

/* untrack(obj) -> obj: a tuple, or a tuple subclass with no fields of its own (a NamedTuple),
 * whose items are all untracked (numbers, strings) can be in no reference cycle: the cyclic GC
 * stops tracking it, as CPython already does for exact tuples. A summary recording queues such
 * `Summary` tuples by the thousand; tracked, each counts toward the next full collection.
 * An OpEvent made by the dispatch point without `values` holds strings, numbers, untracked
 * summaries and shared metas and stacks, none of which can refer back to it: untracked too
 * (a leak would need a garbage cycle reachable from those: from module globals, i.e. none). */
static PyObject *untrack(PyObject *self, PyObject *o) {
    if (g_opevent != NULL && Py_IS_TYPE(o, (PyTypeObject *)g_opevent)) {
        PyObject *v = PyObject_GetAttrString(o, "values");
        if (v == NULL)
            return NULL;
        if (v == Py_None && PyObject_GC_IsTracked(o))
            PyObject_GC_UnTrack(o);
        Py_DECREF(v);
        return Py_NewRef(o);
    }
    if (PyTuple_Check(o) && Py_TYPE(o)->tp_basicsize == PyTuple_Type.tp_basicsize &&
        Py_TYPE(o)->tp_dictoffset == 0 && PyObject_GC_IsTracked(o)) {
        Py_ssize_t n = PyTuple_GET_SIZE(o);
        for (Py_ssize_t i = 0; i < n; i++)
            if (PyObject_GC_IsTracked(PyTuple_GET_ITEM(o, i)))
                return Py_NewRef(o);
        PyObject_GC_UnTrack(o);
    }
    return Py_NewRef(o);
}

static PyObject *setup_untrack(PyObject *self, PyObject *cls) {
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "setup_untrack: OpEvent must be a type");
        return NULL;
    }
    keep(&g_opevent, cls);
    if (s_metas_of == NULL) { /* (s_plain: interned at init, for STATE's snapshot) */
        s_metas_of = PyUnicode_InternFromString("metas_of");
        s_cpu_name = PyUnicode_InternFromString("cpu");
        s_graph_word = PyUnicode_InternFromString("graph");
        s_tf_name = PyUnicode_InternFromString("tf_name");
        g_ev_zero = PyLong_FromLong(0);
        if (!s_metas_of || !s_cpu_name || !s_graph_word || !s_tf_name || !g_ev_zero)
            return NULL;
    }
    slot_offsets(cls, N_EV_FIELDS, g_ev_off); /* (no offsets: plain events are made by `_after`) */
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ naming
 * The two lookups every observed eager op makes for its name (`_naming.op_name`,
 * `_dispatch.named_site`, read them first), in C when they hit the caches those Python
 * functions fill; a miss calls the Python function, which makes what is missing. */
static PyObject *g_sites;      /* _dispatch._SITES */
static PyObject *g_named_py;   /* _dispatch.named_site_py */
static PyObject *g_tls;        /* _naming._tls */
static PyObject *g_made;       /* _naming._made */
static PyObject *g_op_name_py; /* _naming.op_name_py */
static PyObject *s_prefix, *s_counters, *s_calls;

/* named_site(make, name, *parts): see `_dispatch.named_site_py` */
static PyObject *named_site(PyObject *self, PyObject *const *a, Py_ssize_t nargs) {
    if (g_sites == NULL || nargs < 2)
        goto slow;
    PyObject *key = PyTuple_Pack(2, a[0], a[1]);
    if (key == NULL)
        return NULL;
    PyObject *hit = PyDict_GetItemWithError(g_sites, key); /* borrowed: (parts, site) */
    Py_DECREF(key);
    if (hit == NULL) {
        if (PyErr_Occurred())
            return NULL;
        goto slow;
    }
    if (!PyTuple_CheckExact(hit) || PyTuple_GET_SIZE(hit) != 2)
        goto slow;
    PyObject *parts = PyTuple_GET_ITEM(hit, 0);
    if (!PyTuple_CheckExact(parts) || PyTuple_GET_SIZE(parts) != nargs - 2)
        goto slow;
    for (Py_ssize_t i = 2; i < nargs; i++) {
        PyObject *had = PyTuple_GET_ITEM(parts, i - 2);
        if (had == a[i])
            continue;
        int eq = PyObject_RichCompareBool(had, a[i], Py_EQ);
        if (eq < 0)
            return NULL;
        if (!eq)
            goto slow;
    }
    return Py_NewRef(PyTuple_GET_ITEM(hit, 1));
slow:
    return PyObject_Vectorcall(g_named_py, a, nargs, NULL);
}

/* op_name(op): see `_naming.op_name_py` (a name this thread's scope already made) */
static PyObject *op_name(PyObject *self, PyObject *op) {
    if (g_tls == NULL)
        goto slow;
    PyObject *prefix = PyObject_GetAttr(g_tls, s_prefix);
    if (prefix == NULL)
        return NULL;
    PyObject *by_op = PyDict_GetItemWithError(g_made, prefix); /* borrowed */
    Py_DECREF(prefix);
    PyObject *names = by_op != NULL && PyDict_CheckExact(by_op) ? PyDict_GetItemWithError(by_op, op) : NULL;
    if (names == NULL || !PyList_CheckExact(names) || PyList_GET_SIZE(names) == 0) {
        if (PyErr_Occurred())
            return NULL;
        goto slow;
    }
    PyObject *counters = PyObject_GetAttr(g_tls, s_counters);
    if (counters == NULL)
        return NULL;
    if (!PyDict_CheckExact(counters)) {
        Py_DECREF(counters);
        goto slow;
    }
    PyObject *base = PyList_GET_ITEM(names, 0);
    PyObject *had = PyDict_GetItemWithError(counters, base); /* borrowed */
    Py_ssize_t n = 0;
    if (had != NULL) {
        n = PyLong_AsSsize_t(had);
        if (n == -1 && PyErr_Occurred()) {
            Py_DECREF(counters);
            return NULL;
        }
    } else if (PyErr_Occurred()) {
        Py_DECREF(counters);
        return NULL;
    }
    if (n >= PyList_GET_SIZE(names)) { /* a name not made yet: the Python function makes it */
        Py_DECREF(counters);
        goto slow;
    }
    PyObject *name = Py_NewRef(PyList_GET_ITEM(names, n)); /* (before the counter's old value goes) */
    PyObject *next = PyLong_FromSsize_t(n + 1);
    int rc = next != NULL ? PyDict_SetItem(counters, base, next) : -1;
    Py_XDECREF(next);
    Py_DECREF(counters);
    if (rc < 0) {
        Py_DECREF(name);
        return NULL;
    }
    return name;
slow:
    return PyObject_CallOneArg(g_op_name_py, op);
}

/* forward_site(op, inputs, dev): see `tensor._site` (the Site of an observed eager op: its
 * name, its inputs' names, the user's stack when asked), made by `tensor._forward_site` */
static PyObject *s_name, *s__name, *s_give_name, *g_forward_make;

static PyObject *setup_forward(PyObject *self, PyObject *make) {
    keep(&g_forward_make, make);
    Py_RETURN_NONE;
}

static PyObject *forward_site(PyObject *self, PyObject *const *a, Py_ssize_t nargs) {
    if (nargs != 3 || !PyTuple_Check(a[1]) || g_forward_make == NULL || g_state == NULL) {
        PyErr_SetString(PyExc_TypeError, "forward_site(op, inputs, dev) (after setup_forward)");
        return NULL;
    }
    PyObject *op = a[0], *inputs = a[1], *dev = a[2], *make = g_forward_make;
    PyObject *opname = PyObject_GetAttr(op, s_name);
    if (opname == NULL)
        return NULL;
    PyObject *name = op_name(NULL, opname);
    Py_DECREF(opname);
    if (name == NULL)
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(inputs);
    PyObject *ins = PyTuple_New(n), *stack = NULL, *r = NULL;
    if (ins == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyTuple_GET_ITEM(inputs, i);
        PyObject *nm = PyObject_GetAttr(t, s__name);
        if (nm == NULL)
            goto done;
        int has = PyObject_IsTrue(nm);
        if (has <= 0) {
            Py_DECREF(nm);
            if (has < 0)
                goto done;
            nm = PyObject_CallMethodNoArgs(t, s_give_name);
            if (nm == NULL)
                goto done;
        }
        PyTuple_SET_ITEM(ins, i, nm);
    }
    stack = g_st_stacks ? PyObject_CallNoArgs(g_stack_here) : Py_NewRef(Py_None);
    if (stack == NULL)
        goto done;
    PyObject *parts[6] = {make, name, op, ins, dev, stack};
    r = named_site(NULL, parts, 6);
done:
    Py_DECREF(name);
    Py_XDECREF(ins);
    Py_XDECREF(stack);
    return r;
}

/* setup_names(_SITES, named_site_py, _tls, _made, op_name_py) */
static PyObject *setup_names(PyObject *self, PyObject *args) {
    PyObject *sites, *named_py, *tls, *made, *op_name_py;
    if (!PyArg_ParseTuple(args, "O!OOO!O", &PyDict_Type, &sites, &named_py, &tls, &PyDict_Type, &made, &op_name_py))
        return NULL;
    keep(&g_sites, sites);
    keep(&g_named_py, named_py);
    keep(&g_tls, tls);
    keep(&g_made, made);
    keep(&g_op_name_py, op_name_py);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ the memory tracker
 * `profile(profile_memory=True)`'s listener (`profiler.core._MemoryTracker.wrap`, read it
 * first), its common case in C: a record of a CPU op (not an update) with one numpy array
 * as output that owns its memory. Such an output's bytes are counted as allocated at the
 * op's end and, through a weak reference whose callback is `freed` below, as freed when the
 * array goes; everything else (events, several outputs, views, GPU arrays) goes to the
 * Python `on_event`, which does the same for every case. Both share `deltas` and `refs`. */
typedef struct {
    PyObject_HEAD
    PyObject *slow;   /* the Python on_event(e, out=None) */
    PyObject *append; /* what it passes records on to */
    PyObject *deltas; /* bytearray of int64 (t_ns, device code, +/-bytes, seq or 0) rows (see _Deltas) */
    PyObject *refs;   /* dict: id(weak reference) -> (device, bytes, weak reference) */
    PyObject *freed;  /* this object's `freed`, bound: the weak references' callback */
    vectorcallfunc vectorcall;
} MemoryHook;

static PyObject *s_base, *s_cpu, *s_update;

/* appends a CPU row (device code 0) to the deltas: 0, or -1 on error */
static int delta(MemoryHook *self, long long t, long long nb, long long seq) {
    Py_ssize_t n = PyByteArray_GET_SIZE(self->deltas);
    if (PyByteArray_Resize(self->deltas, n + 32) < 0)
        return -1;
    int64_t row[4] = {t, 0, nb, seq};
    memcpy(PyByteArray_AS_STRING(self->deltas) + n, row, sizeof row);
    return 0;
}

static PyObject *hook_freed(MemoryHook *self, PyObject *r) {
    PyObject *key = PyLong_FromVoidPtr(r);
    if (key == NULL)
        return NULL;
    PyObject *v = PyDict_GetItemWithError(self->refs, key);
    if (v == NULL) {
        Py_DECREF(key);
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    }
    Py_INCREF(v);
    if (PyDict_DelItem(self->refs, key) < 0) {
        Py_DECREF(key);
        Py_DECREF(v);
        return NULL;
    }
    Py_DECREF(key);
    long long nb = PyLong_AsLongLong(PyTuple_GET_ITEM(v, 1)); /* (this hook's entries: the CPU's) */
    Py_DECREF(v);
    if (nb == -1 && PyErr_Occurred())
        return NULL;
    return delta(self, now_ns(), -nb, 0) < 0 ? NULL : Py_NewRef(Py_None);
}

/* Tracks one output array `o` of record `e` (an ndarray): 0, or -1 on error */
static int hook_track(MemoryHook *self, PyObject *e, PyObject *o) {
    PyObject *nb = PyObject_GetAttr(o, s_nbytes);
    if (nb == NULL)
        return -1;
    PyObject *base = PyObject_GetAttr(o, s_base);
    if (base == NULL) {
        Py_DECREF(nb);
        return -1;
    }
    int owns = base == Py_None;
    Py_DECREF(base);
    int nonzero = PyObject_IsTrue(nb);
    if (!owns || nonzero <= 0) {
        Py_DECREF(nb);
        return nonzero < 0 ? -1 : 0; /* a view, or nothing allocated */
    }
    PyObject *r = PyWeakref_NewRef(o, self->freed);
    PyObject *key = r ? PyLong_FromVoidPtr(r) : NULL;
    PyObject *val = key ? PyTuple_Pack(3, s_cpu, nb, r) : NULL;
    /* Untracked: a profile's hundreds of live entries would each count toward the next
     * collection. The cycle it closes (entry -> weak reference -> its callback, this hook ->
     * refs -> entry) outlives a dropped tracker only until its arrays go: each one's
     * callback removes its entry, and the last removal leaves no cycle. */
    if (val != NULL)
        PyObject_GC_UnTrack(val);
    int rc = val ? PyDict_SetItem(self->refs, key, val) : -1;
    if (rc == 0) {
        long long t = PyLong_AsLongLong(PyTuple_GET_ITEM(e, 4)), b = PyLong_AsLongLong(nb);
        long long seq = PyLong_AsLongLong(PyTuple_GET_ITEM(e, 1));
        rc = PyErr_Occurred() ? -1 : delta(self, t, b, seq);
    }
    Py_XDECREF(val);
    Py_XDECREF(key);
    Py_XDECREF(r);
    Py_DECREF(nb);
    return rc;
}

/* An output this path tracks (a numpy array), or skips as the Python path does (None, and
 * what cannot be weakly referenced: a numpy scalar, a loss): 1; anything else 0 */
static int hook_takes(PyObject *o) {
    return o == Py_None || Py_IS_TYPE(o, (PyTypeObject *)g_ndarray) || Py_TYPE(o)->tp_weaklistoffset == 0;
}

/* 1: tracked here; 0: not this path's case (the Python on_event takes it); -1: error */
static int hook_fast(MemoryHook *self, PyObject *e, PyObject *out) {
    if (!PyTuple_CheckExact(e) || PyTuple_GET_SIZE(e) < 10)
        return 0;
    PyObject *site = PyTuple_GET_ITEM(e, 0);
    if (!PyTuple_Check(site) || PyTuple_GET_SIZE(site) < N_FIELDS)
        return 0;
    PyObject *dev = PyTuple_GET_ITEM(site, F_DEVICE), *phase = PyTuple_GET_ITEM(site, 1);
    if ((dev != Py_None && dev != g_cpu) || !PyUnicode_Check(phase))
        return 0;
    int several = PyTuple_CheckExact(out);
    Py_ssize_t n = several ? PyTuple_GET_SIZE(out) : 1;
    PyObject *const *outs = several ? &PyTuple_GET_ITEM(out, 0) : &out;
    for (Py_ssize_t i = 0; i < n; i++)
        if (!hook_takes(outs[i]))
            return 0;
    if (PyUnicode_Compare(phase, s_update) == 0)
        return 1; /* updates work in place: nothing allocated */
    for (Py_ssize_t i = 0; i < n; i++)
        if (Py_IS_TYPE(outs[i], (PyTypeObject *)g_ndarray) && hook_track(self, e, outs[i]) < 0)
            return -1;
    return 1;
}

static PyObject *hook_call(PyObject *callable, PyObject *const *a, size_t nargsf, PyObject *kwnames) {
    MemoryHook *self = (MemoryHook *)callable;
    Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    if (kwnames != NULL || n < 1 || n > 2)
        return PyObject_Vectorcall(self->slow, a, nargsf, kwnames);
    if (n == 2 && a[1] != Py_None) {
        int done = hook_fast(self, a[0], a[1]);
        if (done < 0)
            return NULL;
        if (!done)
            return PyObject_Vectorcall(self->slow, a, nargsf, kwnames);
    }
    return PyObject_CallOneArg(self->append, a[0]);
}

static PyObject *hook_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    PyObject *slow, *append, *deltas, *refs;
    if (!PyArg_ParseTuple(args, "OOO!O!", &slow, &append, &PyByteArray_Type, &deltas, &PyDict_Type, &refs))
        return NULL;
    MemoryHook *self = (MemoryHook *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->slow = Py_NewRef(slow);
    self->append = Py_NewRef(append);
    self->deltas = Py_NewRef(deltas);
    self->refs = Py_NewRef(refs);
    self->vectorcall = hook_call;
    self->freed = PyObject_GetAttrString((PyObject *)self, "freed");
    if (self->freed == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int hook_traverse(MemoryHook *self, visitproc visit, void *arg) {
    Py_VISIT(self->slow);
    Py_VISIT(self->append);
    Py_VISIT(self->deltas);
    Py_VISIT(self->refs);
    Py_VISIT(self->freed);
    return 0;
}

static int hook_clear(MemoryHook *self) {
    Py_CLEAR(self->slow);
    Py_CLEAR(self->append);
    Py_CLEAR(self->deltas);
    Py_CLEAR(self->refs);
    Py_CLEAR(self->freed);
    return 0;
}

static void hook_dealloc(MemoryHook *self) {
    PyObject_GC_UnTrack(self);
    hook_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef hook_methods[] = {
    {"freed", (PyCFunction)hook_freed, METH_O, "freed(weak reference): its array went; see _MemoryTracker"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject MemoryHookType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tracetensor._speedups.MemoryHook",
    .tp_basicsize = sizeof(MemoryHook),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "MemoryHook(on_event, append, deltas_buffer, refs): a memory-tracking listener; see _speedups.c",
    .tp_new = hook_new,
    .tp_traverse = (traverseproc)hook_traverse,
    .tp_clear = (inquiry)hook_clear,
    .tp_dealloc = (destructor)hook_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(MemoryHook, vectorcall),
    .tp_methods = hook_methods,
};

/* ------------------------------------------------------------------ a recording's records
 * record_columns(recs, keep_stacks) -> (columns, index, firsts): the trace writer's first
 * pass over a batch of raw records (`TraceWriter._write_records`, read it first), in one loop:
 * `columns`, four int64 columns (seq, run, start, end) one after the other; `index`, each
 * record's int64 number among the batch's distinct (site, thread, outputs[, stack]) keys,
 * Site and stack by identity (the records keep them alive); `firsts`, the first record of
 * each of those keys, which the writer then looks up by value. */
typedef struct {
    PyObject *rec;  /* the key's first record (borrowed: the batch holds it); NULL: empty */
    Py_hash_t hash;
    Py_ssize_t k;   /* the key's number */
} KeySlot;

/* -1 on error, 0 when records `a` and `b` differ in (site, thread, outputs[, stack]), 1 when alike.
 * Site and stack by identity; the rest by value (without a new reference to anything: the
 * program thread keeps changing those objects' reference counts) */
static int same_key(PyObject *a, PyObject *b, int keep_stacks) {
    if (PyTuple_GET_ITEM(a, 0) != PyTuple_GET_ITEM(b, 0) ||
        (keep_stacks && PyTuple_GET_ITEM(a, 6) != PyTuple_GET_ITEM(b, 6)))
        return 0;
    static const int fields[] = {5, 7, 8, 9};
    for (int j = 0; j < 4; j++) {
        int eq = PyObject_RichCompareBool(PyTuple_GET_ITEM(a, fields[j]), PyTuple_GET_ITEM(b, fields[j]), Py_EQ);
        if (eq <= 0)
            return eq;
    }
    return 1;
}

static Py_hash_t key_hash(PyObject *r, int keep_stacks) {
    Py_uhash_t h = (Py_uhash_t)(uintptr_t)PyTuple_GET_ITEM(r, 0) * 1000003u;
    if (keep_stacks)
        h ^= (Py_uhash_t)(uintptr_t)PyTuple_GET_ITEM(r, 6) * 31u;
    static const int fields[] = {5, 7, 8, 9};
    for (int j = 0; j < 4; j++) {
        Py_hash_t x = PyObject_Hash(PyTuple_GET_ITEM(r, fields[j]));
        if (x == -1)
            return -1;
        h = (h ^ (Py_uhash_t)x) * 1099511628211u;
    }
    return (Py_hash_t)(h == (Py_uhash_t)-1 ? 1 : h);
}

static PyObject *record_columns(PyObject *self, PyObject *args) {
    PyObject *recs;
    int keep_stacks;
    if (!PyArg_ParseTuple(args, "O!p", &PyList_Type, &recs, &keep_stacks))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(recs), cap = 64, used = 0;
    KeySlot *table = PyMem_Calloc((size_t)cap, sizeof(KeySlot));
    PyObject *cols = PyBytes_FromStringAndSize(NULL, 4 * n * (Py_ssize_t)sizeof(int64_t));
    PyObject *index = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(int64_t));
    PyObject *firsts = PyList_New(0);
    if (table == NULL || cols == NULL || index == NULL || firsts == NULL) {
        if (table == NULL)
            PyErr_NoMemory();
        goto error;
    }
    int64_t *c = (int64_t *)PyBytes_AS_STRING(cols), *ix = (int64_t *)PyBytes_AS_STRING(index);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *r = PyList_GET_ITEM(recs, i);
        if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) < 10) {
            PyErr_SetString(PyExc_TypeError, "record_columns: a raw record is a tuple of 10 or 11 items");
            goto error;
        }
        for (int k = 0; k < 4; k++) { /* seq, run, t0, t1 */
            long long v = PyLong_AsLongLong(PyTuple_GET_ITEM(r, k + 1));
            if (v == -1 && PyErr_Occurred())
                goto error;
            c[k * n + i] = v;
        }
        Py_hash_t h = key_hash(r, keep_stacks);
        if (h == -1)
            goto error;
        Py_ssize_t at = (Py_ssize_t)((Py_uhash_t)h & (Py_uhash_t)(cap - 1));
        for (;;) { /* open addressing, linear probing */
            KeySlot *e = &table[at];
            if (e->rec == NULL) {
                PyObject *first = PyLong_FromSsize_t(i);
                if (first == NULL || PyList_Append(firsts, first) < 0) {
                    Py_XDECREF(first);
                    goto error;
                }
                Py_DECREF(first);
                e->rec = r;
                e->hash = h;
                e->k = used++;
                ix[i] = e->k;
                break;
            }
            if (e->hash == h) {
                int same = same_key(e->rec, r, keep_stacks);
                if (same < 0)
                    goto error;
                if (same) {
                    ix[i] = e->k;
                    break;
                }
            }
            at = (at + 1) & (cap - 1);
        }
        if (2 * used > cap) { /* grow: rehash what is there */
            Py_ssize_t ncap = 2 * cap;
            KeySlot *bigger = PyMem_Calloc((size_t)ncap, sizeof(KeySlot));
            if (bigger == NULL) {
                PyErr_NoMemory();
                goto error;
            }
            for (Py_ssize_t j = 0; j < cap; j++)
                if (table[j].rec != NULL) {
                    Py_ssize_t a = (Py_ssize_t)((Py_uhash_t)table[j].hash & (Py_uhash_t)(ncap - 1));
                    while (bigger[a].rec != NULL)
                        a = (a + 1) & (ncap - 1);
                    bigger[a] = table[j];
                }
            PyMem_Free(table);
            table = bigger;
            cap = ncap;
        }
    }
    PyMem_Free(table);
    return Py_BuildValue("(NNN)", cols, index, firsts);
error:
    PyMem_Free(table);
    Py_XDECREF(cols);
    Py_XDECREF(index);
    Py_XDECREF(firsts);
    return NULL;
}

/* summary_columns(summ) -> (nsumm, ints, floats): the trace writer's `_summary_columns` (read
 * it first) in one pass: per event its number of summaries (int32, -1 for None), then each
 * summary's seven counts (int64) and four statistics (float64) as rows, a missing one
 * (None) as (-1, 0, ..., 0.0) */
static PyObject *summary_columns(PyObject *self, PyObject *summ) {
    if (!PyList_Check(summ)) {
        PyErr_SetString(PyExc_TypeError, "summary_columns(list of tuples, rows or None)");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(summ), m = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *ss = PyList_GET_ITEM(summ, i);
        if (PyBytes_CheckExact(ss) && PyBytes_GET_SIZE(ss) % 88 == 0) /* a record's packed rows */
            m += PyBytes_GET_SIZE(ss) / 88;
        else if (PyTuple_Check(ss))
            m += PyTuple_GET_SIZE(ss);
        else if (ss != Py_None) {
            PyErr_SetString(PyExc_TypeError, "summary_columns: an event's summaries are a tuple, rows or None");
            return NULL;
        }
    }
    PyObject *ns = PyBytes_FromStringAndSize(NULL, n * 4), *ints = PyBytes_FromStringAndSize(NULL, m * 56);
    PyObject *floats = PyBytes_FromStringAndSize(NULL, m * 32);
    if (ns == NULL || ints == NULL || floats == NULL)
        goto error;
    int32_t *pn = (int32_t *)PyBytes_AS_STRING(ns);
    int64_t *pi = (int64_t *)PyBytes_AS_STRING(ints);
    double *pf = (double *)PyBytes_AS_STRING(floats);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *ss = PyList_GET_ITEM(summ, i);
        if (ss == Py_None) {
            pn[i] = -1;
            continue;
        }
        if (PyBytes_CheckExact(ss)) { /* rows of 7 int64 and 4 float64 (events.SUMMARY_ROW) */
            Py_ssize_t k = PyBytes_GET_SIZE(ss) / 88;
            const char *row = PyBytes_AS_STRING(ss);
            pn[i] = (int32_t)k;
            for (Py_ssize_t j = 0; j < k; j++, pi += 7, pf += 4, row += 88) {
                memcpy(pi, row, 56);
                memcpy(pf, row + 56, 32);
            }
            continue;
        }
        Py_ssize_t k = PyTuple_GET_SIZE(ss);
        pn[i] = (int32_t)k;
        for (Py_ssize_t j = 0; j < k; j++, pi += 7, pf += 4) {
            PyObject *s = PyTuple_GET_ITEM(ss, j);
            if (s == Py_None) {
                pi[0] = -1;
                for (int q = 1; q < 7; q++)
                    pi[q] = 0;
                for (int q = 0; q < 4; q++)
                    pf[q] = 0.0;
                continue;
            }
            if (!PyTuple_Check(s) || PyTuple_GET_SIZE(s) < 11) {
                PyErr_SetString(PyExc_TypeError, "summary_columns: a summary is an 11-field Summary");
                goto error;
            }
            for (int q = 0; q < 7; q++) {
                pi[q] = PyLong_AsLongLong(PyTuple_GET_ITEM(s, q));
                if (pi[q] == -1 && PyErr_Occurred())
                    goto error;
            }
            for (int q = 0; q < 4; q++) {
                pf[q] = PyFloat_AsDouble(PyTuple_GET_ITEM(s, 7 + q));
                if (pf[q] == -1.0 && PyErr_Occurred())
                    goto error;
            }
        }
    }
    return Py_BuildValue("(NNN)", ns, ints, floats);
error:
    Py_XDECREF(ns);
    Py_XDECREF(ints);
    Py_XDECREF(floats);
    return NULL;
}

/* ------------------------------------------------------------------ a queueing listener
 * `events.appender(limit, on_full)` (read it first): the callback of a listener that only
 * queues what it gets (a recording): appends the item to its list, then calls `on_full()`
 * while the list holds more than `limit` items; `take()` hands the list over and starts a
 * new one (atomic: the GIL is held throughout), `len()` is what is queued. In C a call
 * costs a tenth of a Python method's. */
typedef struct {
    PyObject_HEAD
    PyObject *queue, *on_full;
    Py_ssize_t limit;
    vectorcallfunc vectorcall;
} Appender;

static PyObject *appender_vectorcall(PyObject *callable, PyObject *const *a, size_t nargsf, PyObject *kwnames) {
    Appender *self = (Appender *)callable;
    if (kwnames != NULL || PyVectorcall_NARGS(nargsf) != 1) {
        PyErr_SetString(PyExc_TypeError, "appender(item): one item");
        return NULL;
    }
    if (PyList_Append(self->queue, a[0]) < 0)
        return NULL;
    if (PyList_GET_SIZE(self->queue) > self->limit)
        return PyObject_CallNoArgs(self->on_full);
    Py_RETURN_NONE;
}

static PyObject *appender_take(Appender *self, PyObject *unused) {
    PyObject *fresh = PyList_New(0);
    if (fresh == NULL)
        return NULL;
    PyObject *old = self->queue;
    self->queue = fresh;
    return old;
}

static Py_ssize_t appender_len(Appender *self) {
    return PyList_GET_SIZE(self->queue);
}

static PyObject *appender_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    PyObject *on_full;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "nO", &limit, &on_full))
        return NULL;
    Appender *self = (Appender *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->queue = PyList_New(0);
    if (self->queue == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->on_full = Py_NewRef(on_full);
    self->limit = limit;
    self->vectorcall = appender_vectorcall;
    return (PyObject *)self;
}

static int appender_traverse(Appender *self, visitproc visit, void *arg) {
    Py_VISIT(self->queue);
    Py_VISIT(self->on_full);
    return 0;
}

static int appender_clear(Appender *self) {
    Py_CLEAR(self->queue);
    Py_CLEAR(self->on_full);
    return 0;
}

static void appender_dealloc(Appender *self) {
    PyObject_GC_UnTrack(self);
    appender_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef appender_methods[] = {
    {"take", (PyCFunction)appender_take, METH_NOARGS, "take() -> the queued items (a list), removed"},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods appender_as_sequence = {.sq_length = (lenfunc)appender_len};

static PyTypeObject AppenderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tracetensor._speedups.Appender",
    .tp_basicsize = sizeof(Appender),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Appender(limit, on_full): see events.appender",
    .tp_new = appender_new,
    .tp_traverse = (traverseproc)appender_traverse,
    .tp_clear = (inquiry)appender_clear,
    .tp_dealloc = (destructor)appender_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Appender, vectorcall),
    .tp_methods = appender_methods,
    .tp_as_sequence = &appender_as_sequence,
};

/* `events.column_queue(limit, on_full, stacks)`: a recording's queue that keeps raw records as
 * columns instead of tuples. Each record becomes one row of six int64 (seq, run, t0, t1, key,
 * number of summary rows or -1) and its packed summary rows (`events.summary_rows`) go to one
 * buffer; its (site, thread, shape, dtype, nbytes[, stack]) is numbered once ("key", by
 * identity: `shared` makes equal shapes one object, and two numbers for equal parts only cost
 * the writer a slot more). The dispatch point hands its records over without making them
 * (`colq_push`); a record that comes as a tuple (from Python) is taken apart the same way, and
 * run markers as rows (`cq_mark`), anything else (events) as it is. Why: a record tuple and its numbers
 * are six objects made at the op and freed after the write, and the write touched each one
 * again long after it went cold: about a third of what a recording cost a step. */
/* (the run markers' classes, set by `setup_runs`: see the run markers below) */
static PyObject *g_mark_cls[2]; /* RunStart, RunEnd */
static Py_ssize_t g_mark_off[2][10]; /* their fields' slot offsets (0: make them by calling the class) */

typedef struct {
    PyObject *site, *tid, *shape, *dtype, *nbytes, *stack; /* strong references; NULL: empty */
    Py_ssize_t id;
} CQKey;

struct ColumnQueue {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *on_full, *others, *new_keys;
    Py_ssize_t limit;
    int keep_stacks, reset;
    int64_t *rows;
    Py_ssize_t n, cap;
    char *summ;
    Py_ssize_t summ_len, summ_cap;
    CQKey *keys;
    Py_ssize_t kcap, kused;
    /* run markers as rows (see `cq_mark`), and what they share, numbered per batch */
    int64_t *marks;
    Py_ssize_t nm, mcap;
    PyObject *mark_keys, *mark_ids; /* list of key tuples; dict key tuple -> its number */
    Py_ssize_t last_mark[2];        /* the last start's and end's key numbers (-1: none yet) */
};

#define CQ_ROW 6
#define CQ_MAX_KEYS 100000 /* past it the numbering starts over at the next take (a program that keeps making names) */

static void cq_clear_keys(ColumnQueue *q) {
    for (Py_ssize_t i = 0; i < q->kcap; i++) {
        CQKey *k = &q->keys[i];
        if (k->site != NULL) {
            Py_CLEAR(k->site);
            Py_CLEAR(k->tid);
            Py_CLEAR(k->shape);
            Py_CLEAR(k->dtype);
            Py_CLEAR(k->nbytes);
            Py_CLEAR(k->stack);
        }
    }
    q->kused = 0;
}

static Py_uhash_t cq_hash(PyObject *site, PyObject *stack, PyObject *shape, PyObject *dtype, long long tid,
                          long long nbytes) {
    Py_uhash_t h = (Py_uhash_t)(uintptr_t)site * 1000003u;
    h = (h ^ (Py_uhash_t)(uintptr_t)stack) * 1099511628211u;
    h = (h ^ (Py_uhash_t)(uintptr_t)shape) * 1099511628211u;
    h = (h ^ (Py_uhash_t)(uintptr_t)dtype) * 1099511628211u;
    h = (h ^ (Py_uhash_t)tid) * 1099511628211u;
    h = (h ^ (Py_uhash_t)nbytes) * 1099511628211u;
    return h ^ (h >> 29);
}

/* the key number of a record's parts (borrowed references), made on first sight; -1 on error */
static Py_ssize_t cq_key(ColumnQueue *q, PyObject *site, PyObject *tid, PyObject *stack, PyObject *shape,
                         PyObject *dtype, PyObject *nbytes) {
    if (!q->keep_stacks)
        stack = Py_None;
    /* (as unsigned masks: a thread ident is an unsigned long, and no int makes these raise) */
    long long t = (long long)PyLong_AsUnsignedLongLongMask(tid), nb = (long long)PyLong_AsUnsignedLongLongMask(nbytes);
    if (PyErr_Occurred()) /* (not an int at all) */
        return -1;
    if (2 * (q->kused + 1) > q->kcap) { /* grow: rehash */
        {
            Py_ssize_t ncap = q->kcap ? 2 * q->kcap : 256;
            CQKey *bigger = PyMem_Calloc((size_t)ncap, sizeof(CQKey));
            if (bigger == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            for (Py_ssize_t j = 0; j < q->kcap; j++) {
                CQKey *k = &q->keys[j];
                if (k->site == NULL)
                    continue;
                Py_uhash_t h = cq_hash(k->site, k->stack, k->shape, k->dtype,
                                       (long long)PyLong_AsUnsignedLongLongMask(k->tid),
                                       (long long)PyLong_AsUnsignedLongLongMask(k->nbytes));
                Py_ssize_t a = (Py_ssize_t)(h & (Py_uhash_t)(ncap - 1));
                while (bigger[a].site != NULL)
                    a = (a + 1) & (ncap - 1);
                bigger[a] = *k;
            }
            PyMem_Free(q->keys);
            q->keys = bigger;
            q->kcap = ncap;
        }
    }
    Py_uhash_t h = cq_hash(site, stack, shape, dtype, t, nb);
    Py_ssize_t at = (Py_ssize_t)(h & (Py_uhash_t)(q->kcap - 1));
    for (;;) {
        CQKey *k = &q->keys[at];
        if (k->site == NULL)
            break;
        if (k->site == site && k->stack == stack && k->shape == shape && k->dtype == dtype &&
            (long long)PyLong_AsUnsignedLongLongMask(k->tid) == t &&
            (long long)PyLong_AsUnsignedLongLongMask(k->nbytes) == nb)
            return k->id;
        at = (at + 1) & (q->kcap - 1);
    }
    PyObject *desc = PyTuple_Pack(6, site, tid, shape, dtype, nbytes, stack);
    if (desc == NULL || PyList_Append(q->new_keys, desc) < 0) {
        Py_XDECREF(desc);
        return -1;
    }
    Py_DECREF(desc);
    CQKey *k = &q->keys[at];
    k->site = Py_NewRef(site);
    k->tid = Py_NewRef(tid);
    k->shape = Py_NewRef(shape);
    k->dtype = Py_NewRef(dtype);
    k->nbytes = Py_NewRef(nbytes);
    k->stack = Py_NewRef(stack);
    k->id = q->kused++;
    return k->id;
}

static int cq_full(ColumnQueue *q) {
    if (q->n + q->nm + PyList_GET_SIZE(q->others) <= q->limit)
        return 0;
    PyObject *r = PyObject_CallNoArgs(q->on_full);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* row `n` of a buffer of CQ_ROW-int64 rows (`cap` of them, grown by doubling from `first`);
 * NULL with MemoryError */
static int64_t *cq_row(int64_t **buf, Py_ssize_t n, Py_ssize_t *cap, Py_ssize_t first) {
    if (n == *cap) {
        Py_ssize_t ncap = *cap ? 2 * *cap : first;
        int64_t *bigger = PyMem_Realloc(*buf, (size_t)ncap * CQ_ROW * sizeof(int64_t));
        if (bigger == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        *buf = bigger;
        *cap = ncap;
    }
    return *buf + n * CQ_ROW;
}

/* one record, from its parts (borrowed; summ: packed rows, or NULL/None) */
static int colq_push(ColumnQueue *q, PyObject *site, long long seq, PyObject *run, long long t0, long long t1,
                     PyObject *tid, PyObject *stack, PyObject *shape, PyObject *dtype, PyObject *nbytes,
                     PyObject *summ) {
    long long r = PyLong_AsLongLong(run);
    if (r == -1 && PyErr_Occurred())
        return -1;
    Py_ssize_t key = cq_key(q, site, tid, stack, shape, dtype, nbytes);
    if (key < 0)
        return -1;
    long long nsumm = -1;
    if (summ != NULL && summ != Py_None) {
        if (!PyBytes_Check(summ) || PyBytes_GET_SIZE(summ) % 88) {
            PyErr_SetString(PyExc_TypeError, "column_queue: a record's summaries are packed rows (bytes)");
            return -1;
        }
        Py_ssize_t len = PyBytes_GET_SIZE(summ);
        if (q->summ_len + len > q->summ_cap) {
            Py_ssize_t ncap = q->summ_cap ? 2 * q->summ_cap : 64 * 1024;
            while (ncap < q->summ_len + len)
                ncap *= 2;
            char *bigger = PyMem_Realloc(q->summ, (size_t)ncap);
            if (bigger == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            q->summ = bigger;
            q->summ_cap = ncap;
        }
        memcpy(q->summ + q->summ_len, PyBytes_AS_STRING(summ), (size_t)len);
        q->summ_len += len;
        nsumm = len / 88;
    }
    int64_t *row = cq_row(&q->rows, q->n, &q->cap, 1024);
    if (row == NULL)
        return -1;
    row[0] = seq;
    row[1] = r;
    row[2] = t0;
    row[3] = t1;
    row[4] = key;
    row[5] = nsumm;
    q->n++;
    return cq_full(q);
}

/* A run marker (a RunStart or RunEnd made by `marker`) as one row of six int64 instead of an
 * object: (0, run, t_ns, wall_ns, key, 0) for a start, (1, run, t_ns, the loss's float64 bits,
 * key, 1 if there is a loss) for an end. What the steps of a loop share (a start's mode, kind,
 * name, fetches, feeds, graph and thread; an end's thread and error) is a key tuple, numbered
 * once per batch (`mark_keys`). Why: two markers a step were the rest of what a batch handed the
 * writer as objects, each taken apart, pickled, unpickled and looped over in Python (0.7 us a
 * step of the program's, about 1 of the writer's). 1: queued as a row; 0: not a marker this
 * takes (a subclass, a field of another type, one whose key cannot be compared or hashed:
 * queued as it is, so a marker never fails the program); -1: error (no memory). */
static int cq_mark_failed(void) {
    if (PyErr_ExceptionMatches(PyExc_MemoryError))
        return -1;
    PyErr_Clear();
    return 0;
}

static int cq_mark(ColumnQueue *q, PyObject *x) {
    int k = Py_IS_TYPE(x, (PyTypeObject *)g_mark_cls[0]) ? 0 : Py_IS_TYPE(x, (PyTypeObject *)g_mark_cls[1]) ? 1 : -1;
    if (k < 0 || g_mark_off[k][0] <= 0)
        return 0;
    PyObject *f[10];
    int nf = k == 0 ? 10 : 5;
    for (int i = 0; i < nf; i++) {
        f[i] = *(PyObject **)((char *)x + g_mark_off[k][i]);
        if (f[i] == NULL)
            return 0;
    }
    /* start: run 0, t_ns 7, wall_ns 9, shared 1-6 and thread 8; end: run 0, t_ns 1, shared thread 2, error 3, loss 4 */
    PyObject *ints[3] = {f[0], f[k == 0 ? 7 : 1], k == 0 ? f[9] : NULL};
    int64_t v[3] = {0, 0, 0};
    for (int i = 0; i < 3 && ints[i] != NULL; i++) {
        int over = 0;
        if (!PyLong_CheckExact(ints[i]))
            return 0;
        v[i] = PyLong_AsLongLongAndOverflow(ints[i], &over);
        if (over || (v[i] == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return 0;
        }
    }
    int64_t loss_bits = 0, has_loss = 0;
    if (k == 1) {
        if (f[3] != Py_None && !PyUnicode_CheckExact(f[3]))
            return 0;
        if (f[4] != Py_None) {
            if (!PyFloat_CheckExact(f[4]))
                return 0;
            double d = PyFloat_AS_DOUBLE(f[4]);
            memcpy(&loss_bits, &d, sizeof d);
            has_loss = 1;
        }
    }
    PyObject *parts[7];
    int np_ = 0;
    if (k == 0) {
        for (int i = 1; i <= 6; i++)
            parts[np_++] = f[i];
        parts[np_++] = f[8];
    } else {
        parts[np_++] = f[2];
        parts[np_++] = f[3];
    }
    /* the key: the last one of its kind when the fields are the same (a loop's steps), else looked up */
    Py_ssize_t id = q->last_mark[k];
    if (id >= 0) {
        PyObject *last = PyList_GET_ITEM(q->mark_keys, id);
        for (int i = 0; i < np_ && id >= 0; i++) {
            PyObject *a = parts[i], *b = PyTuple_GET_ITEM(last, i);
            if (a == b)
                continue;
            if (Py_TYPE(a) != Py_TYPE(b)) { /* (1 == 1.0 == True: a key holds what came) */
                id = -1;
                break;
            }
            int eq = PyObject_RichCompareBool(a, b, Py_EQ);
            if (eq < 0)
                return cq_mark_failed();
            if (!eq)
                id = -1;
        }
    }
    if (id < 0) {
        PyObject *key = PyTuple_New(np_);
        if (key == NULL)
            return -1;
        for (int i = 0; i < np_; i++)
            PyTuple_SET_ITEM(key, i, Py_NewRef(parts[i]));
        PyObject *known = PyDict_GetItemWithError(q->mark_ids, key); /* borrowed */
        if (known != NULL) {
            id = PyLong_AsSsize_t(known);
            /* equal but of other types (1 and 1.0): a key of its own */
            PyObject *had = PyList_GET_ITEM(q->mark_keys, id);
            for (int i = 0; i < np_; i++)
                if (Py_TYPE(PyTuple_GET_ITEM(had, i)) != Py_TYPE(parts[i])) {
                    Py_DECREF(key);
                    return 0;
                }
        } else {
            PyObject *num = PyErr_Occurred() ? NULL : PyLong_FromSsize_t(PyList_GET_SIZE(q->mark_keys));
            if (num == NULL || PyList_Append(q->mark_keys, key) < 0 || PyDict_SetItem(q->mark_ids, key, num) < 0) {
                Py_XDECREF(num);
                Py_DECREF(key);
                return cq_mark_failed();
            }
            id = PyLong_AsSsize_t(num);
            Py_DECREF(num);
        }
        Py_DECREF(key);
        q->last_mark[k] = id;
    }
    int64_t *row = cq_row(&q->marks, q->nm, &q->mcap, 256);
    if (row == NULL)
        return -1;
    row[0] = k;
    row[1] = v[0];
    row[2] = v[1];
    row[3] = k == 0 ? v[2] : loss_bits;
    row[4] = id;
    row[5] = has_loss;
    q->nm++;
    return 1;
}

static PyObject *colq_vectorcall(PyObject *callable, PyObject *const *a, size_t nargsf, PyObject *kwnames) {
    ColumnQueue *q = (ColumnQueue *)callable;
    if (kwnames != NULL || PyVectorcall_NARGS(nargsf) != 1) {
        PyErr_SetString(PyExc_TypeError, "column_queue(item): one item");
        return NULL;
    }
    PyObject *x = a[0];
    if (PyTuple_CheckExact(x) && (PyTuple_GET_SIZE(x) == 10 || PyTuple_GET_SIZE(x) == 11)) {
        /* a raw record made in Python: (site, seq, run, t0, t1, thread, stack, shape, dtype, nbytes[, rows]) */
        long long seq = PyLong_AsLongLong(PyTuple_GET_ITEM(x, 1));
        long long t0 = PyLong_AsLongLong(PyTuple_GET_ITEM(x, 3)), t1 = PyLong_AsLongLong(PyTuple_GET_ITEM(x, 4));
        if (PyErr_Occurred())
            return NULL;
        PyObject *shape = shared(Py_NewRef(PyTuple_GET_ITEM(x, 7)));
        PyObject *dtype = shape ? shared(Py_NewRef(PyTuple_GET_ITEM(x, 8))) : NULL;
        int bad = dtype == NULL ||
                  colq_push(q, PyTuple_GET_ITEM(x, 0), seq, PyTuple_GET_ITEM(x, 2), t0, t1, PyTuple_GET_ITEM(x, 5),
                            PyTuple_GET_ITEM(x, 6), shape, dtype, PyTuple_GET_ITEM(x, 9),
                            PyTuple_GET_SIZE(x) == 11 ? PyTuple_GET_ITEM(x, 10) : NULL) < 0;
        Py_XDECREF(shape);
        Py_XDECREF(dtype);
        if (bad)
            return NULL;
        Py_RETURN_NONE;
    }
    int m = cq_mark(q, x);
    if (m < 0 || (m == 0 && PyList_Append(q->others, x) < 0) || cq_full(q) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* take() -> (rows, summary rows or None, new keys, reset, others, run marker rows, their keys):
 * what is queued, removed */
static PyObject *colq_take(ColumnQueue *q, PyObject *unused) {
    PyObject *rows = PyBytes_FromStringAndSize((const char *)q->rows, q->n * CQ_ROW * (Py_ssize_t)sizeof(int64_t));
    PyObject *summ = q->summ_len ? PyBytes_FromStringAndSize(q->summ, q->summ_len) : Py_NewRef(Py_None);
    PyObject *marks = PyBytes_FromStringAndSize((const char *)q->marks, q->nm * CQ_ROW * (Py_ssize_t)sizeof(int64_t));
    PyObject *fresh_keys = PyList_New(0), *fresh_others = PyList_New(0);
    PyObject *fresh_mark_keys = PyList_New(0), *fresh_mark_ids = PyDict_New();
    if (rows == NULL || summ == NULL || marks == NULL || fresh_keys == NULL || fresh_others == NULL ||
        fresh_mark_keys == NULL || fresh_mark_ids == NULL) {
        Py_XDECREF(rows);
        Py_XDECREF(summ);
        Py_XDECREF(marks);
        Py_XDECREF(fresh_keys);
        Py_XDECREF(fresh_others);
        Py_XDECREF(fresh_mark_keys);
        Py_XDECREF(fresh_mark_ids);
        return NULL;
    }
    PyObject *r = Py_BuildValue("(NNNONNN)", rows, summ, q->new_keys, q->reset ? Py_True : Py_False, q->others, marks,
                                q->mark_keys);
    Py_DECREF(q->mark_ids);
    q->new_keys = fresh_keys;
    q->others = fresh_others;
    q->mark_keys = fresh_mark_keys;
    q->mark_ids = fresh_mark_ids;
    q->last_mark[0] = q->last_mark[1] = -1;
    q->nm = 0;
    q->n = q->summ_len = 0;
    q->reset = 0;
    if (q->kused > CQ_MAX_KEYS) { /* the numbering starts over with the next batch (which says so) */
        cq_clear_keys(q);
        PyMem_Free(q->keys);
        q->keys = NULL;
        q->kcap = 0;
        q->reset = 1;
    }
    if (q->cap > 64 * 1024) { /* (a burst's buffers are not kept) */
        PyMem_Free(q->rows);
        q->rows = NULL;
        q->cap = 0;
    }
    if (q->summ_cap > 4 * 1024 * 1024) {
        PyMem_Free(q->summ);
        q->summ = NULL;
        q->summ_cap = 0;
    }
    if (q->mcap > 64 * 1024) {
        PyMem_Free(q->marks);
        q->marks = NULL;
        q->mcap = 0;
    }
    return r;
}

static Py_ssize_t colq_len(ColumnQueue *q) {
    return q->n + q->nm + PyList_GET_SIZE(q->others);
}

static PyObject *colq_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    PyObject *on_full;
    Py_ssize_t limit;
    int keep_stacks;
    if (!PyArg_ParseTuple(args, "nOp", &limit, &on_full, &keep_stacks))
        return NULL;
    ColumnQueue *q = (ColumnQueue *)type->tp_alloc(type, 0);
    if (q == NULL)
        return NULL;
    q->others = PyList_New(0);
    q->new_keys = PyList_New(0);
    q->mark_keys = PyList_New(0);
    q->mark_ids = PyDict_New();
    q->last_mark[0] = q->last_mark[1] = -1;
    if (q->others == NULL || q->new_keys == NULL || q->mark_keys == NULL || q->mark_ids == NULL) {
        Py_DECREF(q);
        return NULL;
    }
    q->on_full = Py_NewRef(on_full);
    q->limit = limit;
    q->keep_stacks = keep_stacks;
    q->vectorcall = colq_vectorcall;
    return (PyObject *)q;
}

static int colq_traverse(ColumnQueue *q, visitproc visit, void *arg) {
    Py_VISIT(q->on_full);
    Py_VISIT(q->others);
    Py_VISIT(q->new_keys);
    Py_VISIT(q->mark_keys);
    Py_VISIT(q->mark_ids);
    for (Py_ssize_t i = 0; i < q->kcap; i++)
        if (q->keys[i].site != NULL) {
            Py_VISIT(q->keys[i].site);
            Py_VISIT(q->keys[i].stack);
        }
    return 0;
}

static int colq_clear(ColumnQueue *q) {
    Py_CLEAR(q->on_full);
    Py_CLEAR(q->others);
    Py_CLEAR(q->new_keys);
    Py_CLEAR(q->mark_keys);
    Py_CLEAR(q->mark_ids);
    cq_clear_keys(q);
    return 0;
}

static void colq_dealloc(ColumnQueue *q) {
    PyObject_GC_UnTrack(q);
    colq_clear(q);
    PyMem_Free(q->keys);
    PyMem_Free(q->rows);
    PyMem_Free(q->summ);
    PyMem_Free(q->marks);
    Py_TYPE(q)->tp_free((PyObject *)q);
}

static PyMethodDef colq_methods[] = {
    {"take", (PyCFunction)colq_take, METH_NOARGS,
     "take() -> (rows, summary rows or None, new keys, reset, others, run marker rows, their keys): the queued items, "
     "removed"},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods colq_as_sequence = {.sq_length = (lenfunc)colq_len};

static PyTypeObject ColumnQueueType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tracetensor._speedups.ColumnQueue",
    .tp_basicsize = sizeof(ColumnQueue),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "ColumnQueue(limit, on_full, stacks): see events.column_queue",
    .tp_new = colq_new,
    .tp_traverse = (traverseproc)colq_traverse,
    .tp_clear = (inquiry)colq_clear,
    .tp_dealloc = (destructor)colq_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(ColumnQueue, vectorcall),
    .tp_methods = colq_methods,
    .tp_as_sequence = &colq_as_sequence,
};

/* `events.router(on_record, on_other)`: a listener's callback that hands raw records (exact
 * tuples) to one callable and everything else to another (the plugin's check queues records
 * and looks at events), with no Python frame per record. */
typedef struct {
    PyObject_HEAD
    PyObject *on_record, *on_other;
    vectorcallfunc vectorcall;
} Router;

static PyObject *router_vectorcall(PyObject *callable, PyObject *const *a, size_t nargsf, PyObject *kwnames) {
    Router *self = (Router *)callable;
    if (kwnames != NULL || PyVectorcall_NARGS(nargsf) != 1) {
        PyErr_SetString(PyExc_TypeError, "router(item): one item");
        return NULL;
    }
    return PyObject_CallOneArg(PyTuple_CheckExact(a[0]) ? self->on_record : self->on_other, a[0]);
}

static PyObject *router_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    PyObject *on_record, *on_other;
    if (!PyArg_ParseTuple(args, "OO", &on_record, &on_other))
        return NULL;
    Router *self = (Router *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->on_record = Py_NewRef(on_record);
    self->on_other = Py_NewRef(on_other);
    self->vectorcall = router_vectorcall;
    return (PyObject *)self;
}

static int router_traverse(Router *self, visitproc visit, void *arg) {
    Py_VISIT(self->on_record);
    Py_VISIT(self->on_other);
    return 0;
}

static int router_clear(Router *self) {
    Py_CLEAR(self->on_record);
    Py_CLEAR(self->on_other);
    return 0;
}

static void router_dealloc(Router *self) {
    PyObject_GC_UnTrack(self);
    router_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject RouterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tracetensor._speedups.Router",
    .tp_basicsize = sizeof(Router),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Router(on_record, on_other): see events.router",
    .tp_new = router_new,
    .tp_traverse = (traverseproc)router_traverse,
    .tp_clear = (inquiry)router_clear,
    .tp_dealloc = (destructor)router_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Router, vectorcall),
};

/* ------------------------------------------------------------------ run markers
 * `events._start`, `_run_end`, `auto_run` and `step` in C, the same steps in the same order
 * (read them first): an eager training step begins and ends a run, and with someone listening
 * each end is a RunStart and a RunEnd. In Python that was eight calls a step, a dataclass
 * `__init__` each, about 1 us; here the markers are built straight into their slots.
 * A marker holds numbers, strings, a tuple of strings or None: it is untracked (see `untrack`).
 * Two a step, queued by a recording until its writer takes them, they were most of what a long
 * recording promoted to the oldest generation, and so what set off its full collections. */
static PyObject *g_run_ids;     /* events._run_ids */
static PyObject *g_outer_runs;  /* events._outer */
static PyObject *g_gpu;         /* the _gpu module (`_pending`, `flush`) */
static PyObject *g_step_hooks;  /* events.STEP_HOOKS: called after each step() */
static PyObject *g_scalar_py;   /* events._scalar */
static PyObject *s_auto, *s_loss, *s_pending, *s_flush, *s_step_word, *s_eager_word, *s_clear;
static PyObject *g_zero, *g_no_names, *s_ndim;

/* A marker of class k from its field values, untracked (see `untrack`): its slots written
 * directly when the class is a plain slots dataclass (what `__init__` would do), else by a call. */
static PyObject *marker(int k, PyObject *const *v, Py_ssize_t n) {
    PyTypeObject *cls = (PyTypeObject *)g_mark_cls[k];
    PyObject *o;
    if (g_mark_off[k][0] > 0) {
        o = cls->tp_alloc(cls, 0);
        if (o == NULL)
            return NULL;
        for (Py_ssize_t i = 0; i < n; i++)
            *(PyObject **)((char *)o + g_mark_off[k][i]) = Py_NewRef(v[i]);
    } else {
        o = PyObject_Vectorcall((PyObject *)cls, v, n, NULL);
        if (o == NULL)
            return NULL;
    }
    if (PyObject_GC_IsTracked(o))
        PyObject_GC_UnTrack(o);
    return o;
}

/* `emit(ev)` for a marker: every listener's callback, in order */
static int emit_marker(PyObject *listeners, PyObject *ev) {
    PyObject *calls = calls_of(listeners);
    if (calls == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(calls); i++) {
        PyObject *r = PyObject_CallOneArg(PyTuple_GET_ITEM(PyTuple_GET_ITEM(calls, i), 0), ev);
        if (r == NULL) {
            Py_DECREF(calls);
            return -1;
        }
        Py_DECREF(r);
    }
    Py_DECREF(calls);
    return 0;
}

static PyObject *listeners_now(void) {
    PyObject *ls = PyObject_GetAttr(g_state, s_listeners);
    if (ls != NULL && !(PyTuple_Check(ls) && PyTuple_GET_SIZE(ls) > 0))
        Py_CLEAR(ls); /* (none: NULL, no error) */
    return ls;
}

/* run_start(kind, mode, name, fetches, feeds, graph, t_ns) -> run: see `events._start` */
static PyObject *run_start(PyObject *self, PyObject *const *a, Py_ssize_t nargs) {
    if (nargs != 7 || g_run == NULL) {
        PyErr_SetString(PyExc_TypeError, "run_start(kind, mode, name, fetches, feeds, graph, t_ns) after setup_runs()");
        return NULL;
    }
    PyObject *run = PyIter_Next(g_run_ids);
    if (run == NULL)
        return PyErr_Occurred() ? NULL : PyErr_Format(PyExc_RuntimeError, "run ids ran out");
    PyObject *cur = PyObject_GetAttr(g_run, s_run);
    if (cur == NULL || PyDict_SetItem(g_outer_runs, run, cur) < 0 || PyObject_SetAttr(g_run, s_run, run) < 0) {
        Py_XDECREF(cur);
        Py_DECREF(run);
        return NULL;
    }
    Py_DECREF(cur);
    PyObject *ls = listeners_now();
    if (ls == NULL) {
        if (PyErr_Occurred())
            Py_CLEAR(run);
        return run;
    }
    int t_given = PyObject_IsTrue(a[6]);
    PyObject *fetches = PySequence_Tuple(a[3]), *feeds = fetches ? PySequence_Tuple(a[4]) : NULL;
    PyObject *t = feeds ? (t_given ? Py_NewRef(a[6]) : PyLong_FromLongLong(now_ns())) : NULL;
    PyObject *tid = t ? thread_id() : NULL;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    PyObject *wall = tid ? PyLong_FromLongLong((long long)ts.tv_sec * 1000000000LL + ts.tv_nsec) : NULL;
    PyObject *ev = NULL;
    if (wall != NULL && t_given >= 0) {
        PyObject *v[10] = {run, a[1], a[0], a[2], fetches, feeds, a[5], t, tid, wall};
        ev = marker(0, v, 10);
    }
    int bad = ev == NULL || emit_marker(ls, ev) < 0;
    Py_XDECREF(ev);
    Py_XDECREF(fetches);
    Py_XDECREF(feeds);
    Py_XDECREF(t);
    Py_XDECREF(tid);
    Py_XDECREF(wall);
    Py_DECREF(ls);
    if (bad) {
        Py_DECREF(run);
        return NULL;
    }
    return run;
}

static int set_if_equal(PyObject *attr, PyObject *run, PyObject *to) {
    PyObject *cur = PyObject_GetAttr(g_run, attr);
    if (cur == NULL)
        return -1;
    int eq = PyObject_RichCompareBool(cur, run, Py_EQ);
    Py_DECREF(cur);
    return eq <= 0 ? eq : PyObject_SetAttr(g_run, attr, to);
}

/* run_end(run, error: str | None): see `events._run_end` (what `end_run` does once its error is text) */
static PyObject *run_end(PyObject *self, PyObject *const *a, Py_ssize_t nargs) {
    if (nargs != 2 || g_run == NULL) {
        PyErr_SetString(PyExc_TypeError, "run_end(run, error) after setup_runs()");
        return NULL;
    }
    PyObject *run = a[0];
    PyObject *pending = PyObject_GetAttr(g_gpu, s_pending);
    int p = pending ? PyObject_IsTrue(pending) : -1;
    Py_XDECREF(pending);
    if (p < 0)
        return NULL;
    if (p) { /* device times of this run resolve before its end is announced */
        PyObject *r = PyObject_CallMethodNoArgs(g_gpu, s_flush);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    PyObject *outer = PyDict_GetItemWithError(g_outer_runs, run); /* _outer.pop(run, 0) */
    if (outer != NULL) {
        Py_INCREF(outer);
        if (PyDict_DelItem(g_outer_runs, run) < 0) {
            Py_DECREF(outer);
            return NULL;
        }
    } else if (PyErr_Occurred()) {
        return NULL;
    } else {
        outer = Py_NewRef(g_zero);
    }
    int bad = set_if_equal(s_run, run, outer) < 0;
    Py_DECREF(outer);
    PyObject *loss = bad ? NULL : PyObject_GetAttr(g_run, s_loss);
    if (loss == NULL || PyObject_SetAttr(g_run, s_loss, Py_None) < 0 || set_if_equal(s_auto, run, g_zero) < 0) {
        Py_XDECREF(loss);
        return NULL;
    }
    PyObject *ls = listeners_now();
    if (ls == NULL) {
        Py_DECREF(loss);
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    }
    PyObject *t = PyLong_FromLongLong(now_ns()), *tid = t ? thread_id() : NULL, *value = NULL;
    if (tid != NULL) {
        if (loss == Py_None)
            value = Py_NewRef(Py_None);
        else {
            int zero_d = 0; /* (the loss of a step: a 0-d array, whose float() is cheap) */
            if (Py_IS_TYPE(loss, (PyTypeObject *)g_ndarray)) {
                PyObject *nd = PyObject_GetAttr(loss, s_ndim);
                zero_d = nd != NULL && PyLong_CheckExact(nd) && PyLong_AsLong(nd) == 0;
                Py_XDECREF(nd);
                PyErr_Clear();
            }
            value = zero_d ? PyNumber_Float(loss) : NULL;
            if (value == NULL) { /* (anything else, or a 0-d array float() refuses: `_scalar` decides) */
                PyErr_Clear();
                value = PyObject_CallOneArg(g_scalar_py, loss);
            }
        }
    }
    PyObject *ev = NULL;
    if (value != NULL) {
        PyObject *v[5] = {run, t, tid, a[1], value};
        ev = marker(1, v, 5);
    }
    bad = ev == NULL || emit_marker(ls, ev) < 0;
    Py_XDECREF(ev);
    Py_XDECREF(t);
    Py_XDECREF(tid);
    Py_XDECREF(value);
    Py_DECREF(loss);
    Py_DECREF(ls);
    return bad ? NULL : Py_NewRef(Py_None);
}

/* auto_run(t_ns=0) -> run: see `events.auto_run` */
static PyObject *auto_run_c(PyObject *self, PyObject *const *a, Py_ssize_t nargs) {
    PyObject *v[7] = {s_step_word, s_eager_word, s_step_word, g_no_names, g_no_names, Py_None, nargs > 0 ? a[0] : g_zero};
    PyObject *run = run_start(NULL, v, 7);
    if (run != NULL && PyObject_SetAttr(g_run, s_auto, run) < 0)
        Py_CLEAR(run);
    return run;
}

/* step(): see `events.step` */
static PyObject *step_c(PyObject *self, PyObject *unused) {
    if (g_run == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "setup_runs() was not called");
        return NULL;
    }
    PyObject *run = PyObject_GetAttr(g_run, s_auto);
    if (run == NULL)
        return NULL;
    int open = PyObject_IsTrue(run);
    if (open > 0) {
        PyObject *cur = PyObject_GetAttr(g_run, s_run);
        open = cur ? PyObject_RichCompareBool(cur, run, Py_EQ) : -1;
        Py_XDECREF(cur);
    }
    if (open > 0) {
        PyObject *v[2] = {run, Py_None};
        PyObject *r = run_end(NULL, v, 2);
        Py_XDECREF(r);
        if (r == NULL)
            open = -1;
    }
    Py_DECREF(run);
    if (open < 0)
        return NULL;
    /* the next step's names start afresh (they are made before its run begins) */
    PyObject *counters = PyObject_GetAttr(g_tls, s_counters);
    if (counters == NULL)
        return NULL;
    if (PyDict_CheckExact(counters))
        PyDict_Clear(counters);
    else {
        PyObject *r = PyObject_CallMethodNoArgs(counters, s_clear);
        Py_XDECREF(r);
        if (r == NULL) {
            Py_DECREF(counters);
            return NULL;
        }
    }
    Py_DECREF(counters);
    /* ... and has had no module call yet (`_naming._tls.calls`: see nn.Module._call_inference) */
    if (PyObject_SetAttr(g_tls, s_calls, Py_None) < 0)
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(g_step_hooks); i++) { /* (events.STEP_HOOKS) */
        PyObject *hook = Py_NewRef(PyList_GET_ITEM(g_step_hooks, i));
        PyObject *r = PyObject_CallNoArgs(hook);
        Py_DECREF(hook);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    Py_RETURN_NONE;
}

/* The slot offsets of a plain slots dataclass's n fields, in `__slots__` order (which is the
 * fields' order); 0 first: not one of those (the markers are then made by calling the class) */
static void slot_offsets(PyObject *cls, Py_ssize_t n, Py_ssize_t *off) {
    off[0] = 0;
    PyTypeObject *t = (PyTypeObject *)cls;
    PyObject *fields = PyObject_GetAttrString(cls, "__slots__");
    if (fields == NULL) {
        PyErr_Clear();
        return;
    }
    if (!PyTuple_Check(fields) || PyTuple_GET_SIZE(fields) != n || PyObject_HasAttrString(cls, "__post_init__") ||
        t->tp_alloc != PyType_GenericAlloc || t->tp_init == NULL || t->tp_base != &PyBaseObject_Type ||
        t->tp_dictoffset != 0) {
        Py_DECREF(fields);
        return;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d = PyObject_GetAttr(cls, PyTuple_GET_ITEM(fields, i));
        if (d == NULL) {
            PyErr_Clear();
            off[0] = 0;
            break;
        }
        int ok = Py_IS_TYPE(d, &PyMemberDescr_Type) && ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
        off[i] = ok ? ((PyMemberDescrObject *)d)->d_member->offset : 0;
        Py_DECREF(d);
        if (!ok) {
            off[0] = 0;
            break;
        }
    }
    Py_DECREF(fields);
}

/* setup_runs(_run_ids, _outer, _gpu, _scalar, RunStart, RunEnd, STEP_HOOKS), after setup() and setup_names() */
static PyObject *setup_runs(PyObject *self, PyObject *args) {
    PyObject *ids, *outer, *gpu, *scalar, *rs, *re, *hooks;
    if (!PyArg_ParseTuple(args, "OO!OOO!O!O!", &ids, &PyDict_Type, &outer, &gpu, &scalar, &PyType_Type, &rs,
                          &PyType_Type, &re, &PyList_Type, &hooks))
        return NULL;
    if (g_run == NULL || g_tls == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "setup_runs: setup() and setup_names() first");
        return NULL;
    }
    if (g_zero == NULL) {
        g_zero = PyLong_FromLong(0);
        g_no_names = PyTuple_New(0);
        s_auto = PyUnicode_InternFromString("auto");
        s_loss = PyUnicode_InternFromString("loss");
        s_pending = PyUnicode_InternFromString("_pending");
        s_flush = PyUnicode_InternFromString("flush");
        s_clear = PyUnicode_InternFromString("clear");
        s_ndim = PyUnicode_InternFromString("ndim");
        s_step_word = PyUnicode_InternFromString("step");
        s_eager_word = PyUnicode_InternFromString("eager");
        if (!g_zero || !g_no_names || !s_auto || !s_loss || !s_pending || !s_flush || !s_clear || !s_ndim ||
            !s_step_word || !s_eager_word)
            return NULL;
    }
    keep(&g_run_ids, ids);
    keep(&g_outer_runs, outer);
    keep(&g_gpu, gpu);
    keep(&g_scalar_py, scalar);
    keep(&g_mark_cls[0], rs);
    keep(&g_mark_cls[1], re);
    keep(&g_step_hooks, hooks);
    slot_offsets(rs, 10, g_mark_off[0]);
    slot_offsets(re, 5, g_mark_off[1]);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"dispatch", (PyCFunction)(void (*)(void))dispatch, METH_FASTCALL,
     "dispatch(site, fn, args, arrays, attrs={}): the dispatch point (see tracetensor._dispatch)"},
#if PY_VERSION_HEX >= 0x030B0000
    {"user_frames", (PyCFunction)(void (*)(void))user_frames, METH_FASTCALL, "user_frames(limit=8): see _source"},
    {"stack_here", stack_here, METH_NOARGS, "stack_here(): see _source"},
    {"hold", hold, METH_NOARGS, "hold(): see _source"},
    {"release", release, METH_O, "release(outer): see _source"},
    {"setup_stacks", setup_stacks, METH_VARARGS, "setup_stacks(_internal_cache, _is_internal, _frames, _chains, _walk)"},
#endif
    {"setup_runs", setup_runs, METH_VARARGS, "setup_runs(_run_ids, _outer, _gpu, _scalar, RunStart, RunEnd, STEP_HOOKS)"},
    {"run_start", (PyCFunction)(void (*)(void))run_start, METH_FASTCALL, "run_start(kind, mode, name, fetches, feeds, graph, t_ns): see events._start"},
    {"run_end", (PyCFunction)(void (*)(void))run_end, METH_FASTCALL, "run_end(run, error): see events._run_end"},
    {"auto_run", (PyCFunction)(void (*)(void))auto_run_c, METH_FASTCALL, "auto_run(t_ns=0): see events.auto_run"},
    {"step", step_c, METH_NOARGS,
     "step()\n--\n\nEnds the calling thread's eager step (its implicit run), if one is open and current:\n"
     "`optimizer.step()`, `profiler.step()`, `tt.step()` and a debugger-wrapped call call it.\n"
     "The next eager op begins the next step. Explicit runs (a `Session.run`, a profiler\n"
     "step, a wrapped call) are never ended here: their owners end them."},
    {"named_site", (PyCFunction)(void (*)(void))named_site, METH_FASTCALL, "named_site(make, name, *parts): see _dispatch"},
    {"op_name", op_name, METH_O, "op_name(op): see _naming"},
    {"forward_site", (PyCFunction)(void (*)(void))forward_site, METH_FASTCALL, "forward_site(op, inputs, dev): see tensor._site"},
    {"setup_forward", setup_forward, METH_O, "setup_forward(tensor._forward_site)"},
    {"setup_names", setup_names, METH_VARARGS, "setup_names(_SITES, named_site_py, _tls, _made, op_name_py)"},
    {"setup_summaries", setup_summaries, METH_VARARGS, "setup_summaries(Summary, _summary)"},
    {"set_wide", set_wide, METH_O, "set_wide(on) -> whether the AVX2 summary pass is in use now (tests)"},
    {"summary_columns", summary_columns, METH_O, "summary_columns(summ): see _speedups.c"},
    {"record_columns", record_columns, METH_VARARGS, "record_columns(recs, keep_stacks): see _speedups.c"},
    {"summary", summary_stats, METH_O, "summary(a) -> Summary or None: see _speedups.c"},
    {"untrack", untrack, METH_O, "untrack(obj) -> obj: see _speedups.c"},
    {"finite", finite_check, METH_O, "finite(a) -> True, False or None (not decided here): see _speedups.c"},
    {"forget_calls", forget_calls, METH_NOARGS, "forget_calls(): STATE's listeners changed"},
    {"setup_untrack", setup_untrack, METH_O, "setup_untrack(OpEvent)"},
    {"setup", setup, METH_VARARGS, "setup(STATE, RUN, _SEQ, auto_run, _observed, _after, stack_here, finite, _all_finite, ndarray, CPU, _NOATTRS)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speedups", NULL, -1, methods};

PyMODINIT_FUNC PyInit__speedups(void) {
    s_listeners = PyUnicode_InternFromString("listeners");
    s_lean = PyUnicode_InternFromString("lean");
    s_outputs = PyUnicode_InternFromString("outputs");
    s_checked = PyUnicode_InternFromString("lean_checked");
    s_stacks = PyUnicode_InternFromString("stacks");
    s_run = PyUnicode_InternFromString("run");
    s_callback = PyUnicode_InternFromString("callback");
    s_error = PyUnicode_InternFromString("error");
    s_shape = PyUnicode_InternFromString("shape");
    s_dtype = PyUnicode_InternFromString("dtype");
    s_nbytes = PyUnicode_InternFromString("nbytes");
#if PY_VERSION_HEX >= 0x030B0000
    g_empty = PyTuple_New(0);
    if (!g_empty)
        return NULL;
#endif
    if (!s_outputs || !s_listeners || !s_lean || !s_checked || !s_stacks || !s_run || !s_callback || !s_error || !s_shape || !s_dtype || !s_nbytes)
        return NULL;
    s_summarized = PyUnicode_InternFromString("lean_summarized");
    s_quiet = PyUnicode_InternFromString("quiet");
    s_plain = PyUnicode_InternFromString("plain");
    if (!s_summarized || !s_quiet || !s_plain)
        return NULL;
    s_name = PyUnicode_InternFromString("name");
    s__name = PyUnicode_InternFromString("_name");
    s_give_name = PyUnicode_InternFromString("_give_name");
    if (!s_name || !s__name || !s_give_name)
        return NULL;
    s_prefix = PyUnicode_InternFromString("prefix");
    s_counters = PyUnicode_InternFromString("counters");
    s_calls = PyUnicode_InternFromString("calls");
    if (!s_prefix || !s_counters || !s_calls)
        return NULL;
    s_base = PyUnicode_InternFromString("base");
    s_cpu = PyUnicode_InternFromString("cpu");
    s_update = PyUnicode_InternFromString("update");
    if (!s_base || !s_cpu || !s_update || PyType_Ready(&MemoryHookType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyType_Ready(&RouterType) < 0 || PyModule_AddObjectRef(m, "Router", (PyObject *)&RouterType) < 0 ||
        PyType_Ready(&AppenderType) < 0 || PyModule_AddObjectRef(m, "Appender", (PyObject *)&AppenderType) < 0 ||
        PyType_Ready(&ColumnQueueType) < 0 ||
        PyModule_AddObjectRef(m, "ColumnQueue", (PyObject *)&ColumnQueueType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "MemoryHook", (PyObject *)&MemoryHookType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
