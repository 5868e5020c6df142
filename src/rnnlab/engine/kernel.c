/*
 * rnnlab engine kernel: whole optimiser steps of one small recurrent model (token
 * embedding or real-valued features -> one recurrent cell -> linear head) in native
 * code, forward and backward through time written out by hand. The head reads the
 * last state (classify: cross-entropy; regress-last: mean squared error) or every
 * step (tag: cross-entropy over the steps whose label is not -100, PyTorch's
 * ignore_index), which covers every task of the memory suite.
 *
 * Why native: a DigitSum model (hidden 32, batch 8) does a few thousand
 * multiply-adds per time step, so in PyTorch or JAX nearly all of its time is
 * per-operation dispatch. Here one call runs hundreds of optimiser steps with no
 * dispatch at all, and the parameters and optimiser state stay in L1/L2 cache.
 *
 * Parameters live in one flat float32 buffer in *kernel layout*: matrices used
 * on the forward pass are stored transposed (input-major) so that every inner
 * loop runs over a contiguous output row and vectorises without reassociating
 * sums (no -ffast-math; results stay within float rounding of PyTorch's).
 * Element-wise optimisers do not care about layout; Python converts to and
 * from PyTorch's state dict at the boundaries (rnnlab/engine/layout.py).
 *
 *   emb   [V][E]        embedding rows (PyTorch layout); none for feature inputs
 *   wihT  [E][G*H]      weight_ih transposed (features: E = the feature count, unpadded)
 *   whhT  [H][G*H]      weight_hh transposed
 *   bih   [G*H]         bias_ih
 *   bhh   [G*H]         bias_hh
 *   fcwT  [H][C']       head weight transposed
 *   fcb   [C']          head bias
 *
 * Gate order is PyTorch's: LSTM i, f, g, o; GRU r, z, n.
 * Python pads E, H and the class count C up to multiples of 16 (E', H', C') with
 * zero rows and columns (padded units stay exactly zero through training, padded
 * classes are left out of the softmax; see layout.py), so every hot loop
 * works on whole vectors written with GCC's vector extension, one register wide
 * on the target: 16 floats on AVX-512, 8 on AVX2, 4 on SSE and NEON (see
 * "vectors as wide as the target's registers" below).
 *
 * Build: gcc -O3 -march=native -fno-math-errno -shared -fPIC (rnnlab/engine/native.py).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define RN_SRN 0
#define RN_RESIDUAL 1
#define RN_LSTM 2
#define RN_GRU 3

#define RN_ADAM 0
#define RN_SGD 1

#define RN_CLASSIFY 0 /* logits from the last state, cross-entropy */
#define RN_TAG 1      /* logits at every step, cross-entropy where the label is not -100 */
#define RN_REGRESS 2  /* real outputs from the last state, mean squared error */
#define RN_IGNORE (-100)

/* dims[] passed from Python, in this order. D_FEAT > 0: inputs are D_FEAT real features
 * per step (D_V is then 0 and D_E == D_FEAT); 0: token ids. */
enum { D_CELL, D_RELU, D_V, D_E, D_H, D_C, D_L, D_OPTIM, D_REDUCTION_SUM, D_HEAD, D_FEAT,
       D_NDIMS };
/* hyper[] passed from Python, in this order; a clip value <= 0 means "off". */
enum { P_LR, P_BETA1, P_BETA2, P_EPS, P_WD, P_MOMENTUM, P_CLIP_NORM, P_CLIP_VALUE,
       P_CLIP_PER_PARAM, P_NHYPER };

typedef struct {
    int cell, relu, V, E, H, C, Cp, L, G, GH, head, F;
    float *emb, *wihT, *whhT, *bih, *bhh, *fcwT, *fcb;
    long n_params;
    long off[8]; /* offsets of the seven tensors, and the total */
} Net;

static int gates_of(int cell) {
    return cell == RN_LSTM ? 4 : (cell == RN_GRU ? 3 : 1);
}

static void net_layout(Net *n, const int32_t *dims) {
    n->cell = dims[D_CELL];
    n->relu = dims[D_RELU];
    n->V = dims[D_V];
    n->E = dims[D_E];
    n->H = dims[D_H];
    n->C = dims[D_C];
    n->Cp = (n->C + 15) / 16 * 16;
    n->L = dims[D_L];
    n->G = gates_of(n->cell);
    n->GH = n->G * n->H;
    n->head = dims[D_HEAD];
    n->F = dims[D_FEAT];
    long sizes[7] = {(long)n->V * n->E, (long)n->E * n->GH, (long)n->H * n->GH, n->GH, n->GH,
                     (long)n->H * n->Cp, n->Cp};
    long o = 0;
    for (int i = 0; i < 7; i++) {
        n->off[i] = o;
        o += sizes[i];
    }
    n->off[7] = o;
    n->n_params = o;
}

static void net_bind(Net *n, float *p) {
    n->emb = p + n->off[0];
    n->wihT = p + n->off[1];
    n->whhT = p + n->off[2];
    n->bih = p + n->off[3];
    n->bhh = p + n->off[4];
    n->fcwT = p + n->off[5];
    n->fcb = p + n->off[6];
}

long rn_num_params(const int32_t *dims) {
    Net n;
    net_layout(&n, dims);
    return n.n_params;
}

/* ---- elementary functions (Cephes single-precision polynomials) ---- */

/* Past the float range the results are exactly what torch.exp gives there, inf above
 * and 0 below (not a clamped finite value: a sigmoid or tanh that saturates must
 * saturate exactly, or its derivative stays nonzero and huge gradients go through
 * where PyTorch's are exactly zero). Below ln(FLT_MIN) torch gives denormals; 0 here. */
#define RN_EXP_HI 88.7228391f
#define RN_EXP_LO -87.3365448f

static inline __attribute__((always_inline)) float rn_exp(float x) {
    if (x > RN_EXP_HI) return INFINITY;
    if (x < RN_EXP_LO) return 0.0f;
    x = x > 88.0f ? 88.0f : x; /* 2^128 has no float exponent: stop short */
    x = x < -87.0f ? -87.0f : x;
    float fx = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - fx * 0.693359375f;
    r = r + fx * 2.12194440e-4f;
    float z = r * r;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * z + r + 1.0f;
    int32_t e = ((int32_t)fx + 127) << 23;
    float scale;
    memcpy(&scale, &e, sizeof scale);
    return y * scale;
}

/* ---- vectors as wide as the target's registers ----
 *
 * Chosen at build time from the macros the compiler defines for its -march target
 * (native.py builds with -march=native, so for the CPU at hand): one vector fills
 * one register, never two, so nothing is split or spilled. RN_MR x RN_NR is the
 * register block of the matrix product: RN_MR rows by RN_NR vectors of outputs stay
 * in registers, RN_MR * RN_NR independent FMA chains, sized to leave room for the
 * RN_NR weight vectors and a broadcast in the register file (32 on AVX-512 and NEON,
 * 16 on AVX2 and SSE). Every variant sums each output element over k in the same
 * order, one chain, so the variants differ only where FMA is missing (SSE: a
 * product and a sum rounded separately). */
#if defined(__AVX512F__)
#define RN_VW 16
#define RN_MR 4
#define RN_NR 2
#define RN_ISA "avx512"
#elif defined(__AVX2__) && defined(__FMA__)
#define RN_VW 8
#define RN_MR 6
#define RN_NR 2
#define RN_ISA "avx2-fma"
#elif defined(__AVX__)
#define RN_VW 8
#define RN_MR 4
#define RN_NR 1
#define RN_ISA "avx"
#elif defined(__ARM_NEON)
#define RN_VW 4
#define RN_MR 4
#define RN_NR 4
#define RN_ISA "neon"
#elif defined(__SSE2__)
#define RN_VW 4
#define RN_MR 4
#define RN_NR 2
#define RN_ISA "sse"
#else
#define RN_VW 4
#define RN_MR 4
#define RN_NR 2
#define RN_ISA "generic"
#endif
#define RN_STR2(x) #x
#define RN_STR(x) RN_STR2(x)

/* Layout padding (layout.py's VECTOR) is 16 floats: a whole number of vectors on every target. */
#if 16 % RN_VW != 0
#error "the vector width must divide the layout's padding of 16 floats"
#endif

/* What this build is, for rnnlab.engine.describe(): "isa vector-floats rows x vectors". */
const char *rn_variant(void) {
    return RN_ISA " " RN_STR(RN_VW) " " RN_STR(RN_MR) "x" RN_STR(RN_NR);
}

typedef float vf __attribute__((vector_size(RN_VW * 4)));
typedef int32_t vfi __attribute__((vector_size(RN_VW * 4)));

static inline __attribute__((always_inline)) vf ld(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline __attribute__((always_inline)) void st(float *p, vf v) { memcpy(p, &v, sizeof v); }

/* Every lane x: a broadcast (not 0 + x, which costs an add and turns -0 into +0). */
static inline __attribute__((always_inline)) vf splat(float x) {
    const vf v = {x};
    return __builtin_shuffle(v, (vfi){0});
}

static inline __attribute__((always_inline)) vf vsel(vfi mask, vf a, vf b) {
    return (vf)((mask & (vfi)a) | (~mask & (vfi)b));
}

static inline __attribute__((always_inline)) vf vexp(vf x) {
    const vfi over = x > RN_EXP_HI, under = x < RN_EXP_LO;
    x = vsel(x > 88.0f, splat(88.0f), x); /* 2^128 has no float exponent: stop short */
    x = vsel(x < -87.0f, splat(-87.0f), x);
    vf fx = x * 1.44269504088896341f + 0.5f;
    vfi n = __builtin_convertvector(fx, vfi); /* truncation; fix up to floor below */
    n += (vfi)(__builtin_convertvector(n, vf) > fx);
    vf nf = __builtin_convertvector(n, vf);
    vf r = x - nf * 0.693359375f;
    r = r + nf * 2.12194440e-4f;
    vf z = r * r;
    vf y = splat(1.9875691500e-4f);
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * z + r + 1.0f;
    y = y * (vf)((n + 127) << 23);
    return vsel(under, splat(0.0f), vsel(over, splat(INFINITY), y));
}

static inline __attribute__((always_inline)) vf vtanh(vf x) {
    const vfi sign = (vfi)x & (int32_t)0x80000000;
    vf ax = (vf)((vfi)x & 0x7fffffff);
    vf z = x * x;
    vf p = splat(-5.70498872745e-3f);
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    p = p * z * x + x;
    /* up to 44, where exp(2a) still fits: tanh rounds to exactly +-1 from 9.02 on */
    vf a = vsel(ax < 44.0f, ax, splat(44.0f));
    vf q = 1.0f - 2.0f / (vexp(a + a) + 1.0f);
    q = (vf)((vfi)q | sign);
    return vsel(ax < 0.625f, p, q);
}

static inline __attribute__((always_inline)) vf vsigmoid(vf x) {
    return 1.0f / (1.0f + vexp(-x));
}

/*
 * out[i][j] (+)= sum_k A(i, k) * W[k][j] for i < M, j < N (N a multiple of RN_VW),
 * with A(i, k) = A[i*sai + k*sak]. Blocks of RN_MR rows by RN_NR vectors of outputs
 * stay in registers for the whole sum over k, each weight vector loaded once per
 * RN_MR rows; the edges use smaller blocks of the same shape of loop. Every output
 * element is one chain of multiply-adds in the order k = 0, 1, ..., K-1, whatever
 * the block it falls in, so the blocking never changes a result.
 */
#define RN_BLOCK(MR, NR)                                                                  \
    do {                                                                                  \
        vf acc[MR][NR];                                                                   \
        for (int r = 0; r < MR; r++)                                                      \
            for (int c = 0; c < NR; c++)                                                  \
                acc[r][c] = accumulate ? ld(out + (i + r) * ldo + j + RN_VW * c)          \
                                       : splat(0.0f);                                     \
        for (int k = 0; k < K; k++) {                                                     \
            vf w[NR];                                                                     \
            for (int c = 0; c < NR; c++) w[c] = ld(W + k * ldw + j + RN_VW * c);          \
            for (int r = 0; r < MR; r++) {                                                \
                const vf a = splat(A[(i + r) * sai + k * sak]);                           \
                for (int c = 0; c < NR; c++) acc[r][c] += a * w[c];                       \
            }                                                                             \
        }                                                                                 \
        for (int r = 0; r < MR; r++)                                                      \
            for (int c = 0; c < NR; c++) st(out + (i + r) * ldo + j + RN_VW * c, acc[r][c]); \
    } while (0)

static void gemm(float *out, long ldo, const float *A, long sai, long sak, const float *W,
                 long ldw, int M, int K, int N, int accumulate) {
    int i = 0;
    for (; i + RN_MR <= M; i += RN_MR) {
        int j = 0;
        for (; j + RN_NR * RN_VW <= N; j += RN_NR * RN_VW) RN_BLOCK(RN_MR, RN_NR);
        for (; j < N; j += RN_VW) RN_BLOCK(RN_MR, 1);
    }
    for (; i + 2 <= M; i += 2) {
        int j = 0;
        for (; j + RN_NR * RN_VW <= N; j += RN_NR * RN_VW) RN_BLOCK(2, RN_NR);
        for (; j < N; j += RN_VW) RN_BLOCK(2, 1);
    }
    for (; i < M; i++) {
        int j = 0;
        for (; j + RN_NR * RN_VW <= N; j += RN_NR * RN_VW) RN_BLOCK(1, RN_NR);
        for (; j < N; j += RN_VW) RN_BLOCK(1, 1);
    }
}

/* ---- workspace ---- */

typedef struct {
    float *P;      /* [V][GH] embedding projected by weight_ih, plus biases */
    float *wih;    /* [GH][E] weight_ih, PyTorch layout (backward to embeddings) */
    float *whh;    /* [GH][H] weight_hh, PyTorch layout (backward through time) */
    float *fcw;    /* [C'][H] head weight, PyTorch layout */
    float *hs;     /* [L+1][B][H] hidden states, hs[0] = 0 */
    float *acts;   /* [L][B][GH] gate activations (SRN: tanh/relu output) */
    float *cs;     /* [L+1][B][H] LSTM cell states */
    float *tcs;    /* [L][B][H] LSTM tanh(c) */
    float *ghn;    /* [L][B][H] GRU W_hn h + b_hn */
    float *gh;     /* [B][GH] hidden pre-activation */
    float *xs;     /* [L][B][F] feature inputs of the batch, step-major */
    float *gi;     /* [B][GH] input part of the pre-activation (feature inputs) */
    float *dgis;   /* [L][B][GH] gradient of the input pre-activation (feature inputs) */
    float *hv;     /* [R][H] the states the head reads (R = B, or L*B for tag) */
    float *logits; /* [R][C'] */
    float *dh;     /* [B][H] */
    float *dhp;    /* [B][H] */
    float *dc;     /* [B][H] */
    float *dgi;    /* [B][GH] gradient of the input pre-activation */
    float *dghs;   /* [L][B][GH] gradient of the hidden pre-activation, every step */
    float *Gacc;   /* [V][GH] dgi summed per token */
    float *grad;   /* [n_params] */
    int32_t *yv;   /* [R] label of each head row */
    int32_t *vt;   /* [R] step of each head row (tag) */
    int32_t *vb;   /* [R] batch row of each head row (tag) */
    int32_t *tstart; /* [L+1] head rows of step t: tstart[t] .. tstart[t+1] (tag) */
    void *block;
    void *iblock;
} Work;

static int work_alloc(Work *w, const Net *n, int B) {
    long L = n->L, H = n->H, GH = n->GH, V = n->V, E = n->E, C = n->Cp, F = n->F;
    long R = n->head == RN_TAG ? L * B : B;
    long sizes[] = {V * GH, GH * E, GH * H, C * H, (L + 1) * B * H, L * B * GH,
                    (L + 1) * B * H, L * B * H, L * B * H, B * GH, L * B * F, F ? B * GH : 0,
                    F ? L * B * GH : 0, R * H, R * C, B * H, B * H, B * H, B * GH, L * B * GH,
                    V * GH, n->n_params};
    int count = (int)(sizeof sizes / sizeof sizes[0]);
    long total = 0;
    for (int i = 0; i < count; i++) total += (sizes[i] + 15) / 16 * 16;
    float *base = (float *)aligned_alloc(64, (size_t)total * sizeof(float) + 64);
    int32_t *ints = (int32_t *)malloc((size_t)(3 * R + L + 1) * sizeof(int32_t));
    if (!base || !ints) {
        free(base);
        free(ints);
        return -1;
    }
    memset(base, 0, (size_t)total * sizeof(float));
    w->block = base;
    w->iblock = ints;
    float **slots[] = {&w->P, &w->wih, &w->whh, &w->fcw, &w->hs, &w->acts, &w->cs, &w->tcs,
                       &w->ghn, &w->gh, &w->xs, &w->gi, &w->dgis, &w->hv, &w->logits, &w->dh,
                       &w->dhp, &w->dc, &w->dgi, &w->dghs, &w->Gacc, &w->grad};
    long o = 0;
    for (int i = 0; i < count; i++) {
        *slots[i] = base + o;
        o += (sizes[i] + 15) / 16 * 16;
    }
    w->yv = ints;
    w->vt = ints + R;
    w->vb = ints + 2 * R;
    w->tstart = ints + 3 * R;
    return 0;
}

static void work_free(Work *w) {
    free(w->block);
    free(w->iblock);
}

/* PyTorch-layout copies of the matrices and the projected embedding table,
 * refreshed after every parameter update. */
static void prepare(const Net *n, Work *w) {
    const int E = n->E, H = n->H, GH = n->GH, C = n->Cp, V = n->V;
    for (int k = 0; k < E; k++)
        for (int j = 0; j < GH; j++) w->wih[j * E + k] = n->wihT[k * GH + j];
    for (int k = 0; k < H; k++)
        for (int j = 0; j < GH; j++) w->whh[j * H + k] = n->whhT[k * GH + j];
    for (int k = 0; k < H; k++)
        for (int c = 0; c < C; c++) w->fcw[c * H + k] = n->fcwT[k * C + c];
    gemm(w->P, GH, n->emb, E, 1, n->wihT, GH, V, E, GH, 0);
    /* GRU keeps b_hh apart: its n-gate part is multiplied by r. */
    const int fold_bhh = n->cell != RN_GRU;
    for (int v = 0; v < V; v++) {
        float *row = w->P + (long)v * GH;
        for (int j = 0; j < GH; j += RN_VW) {
            vf x = ld(row + j) + ld(n->bih + j);
            if (fold_bhh) x += ld(n->bhh + j);
            st(row + j, x);
        }
    }
}

/* ---- forward through time for B sequences; fills hs/acts/cs/tcs/ghn ---- */

/* Feature inputs: gather step t's features of the batch into xs[t] and compute the input
 * part of the pre-activation, gi = b_ih (+ b_hh but for the GRU) + x W_ih^T, into w->gi
 * (what the projected embedding table P holds for token inputs). */
static void feature_input(const Net *n, Work *w, const float *feats, const int32_t *rows,
                          int B, int t) {
    const int L = n->L, F = n->F, GH = n->GH;
    float *xt = w->xs + (long)t * B * F;
    for (int b = 0; b < B; b++)
        memcpy(xt + (long)b * F, feats + ((long)rows[b] * L + t) * F, (size_t)F * sizeof(float));
    const int fold_bhh = n->cell != RN_GRU;
    for (int b = 0; b < B; b++) {
        float *row = w->gi + (long)b * GH;
        for (int j = 0; j < GH; j += RN_VW)
            st(row + j, fold_bhh ? ld(n->bih + j) + ld(n->bhh + j) : ld(n->bih + j));
    }
    gemm(w->gi, GH, xt, F, 1, n->wihT, GH, B, F, GH, 1);
}

static void forward(const Net *n, Work *w, const int32_t *tokens, const float *feats,
                    const int32_t *rows, int B) {
    const int L = n->L, H = n->H, GH = n->GH;
    /* The initial state is zero. The buffers are laid out for this call's batch size,
     * so a larger batch after a smaller one must not see the smaller one's states. */
    memset(w->hs, 0, (size_t)B * H * sizeof(float));
    memset(w->cs, 0, (size_t)B * H * sizeof(float));
    for (int t = 0; t < L; t++) {
        const float *hprev_all = w->hs + (long)t * B * H;
        float *hnew_all = w->hs + (long)(t + 1) * B * H;
        if (feats) feature_input(n, w, feats, rows, B, t);
#define RN_INPUT(b) (feats ? w->gi + (long)(b) * GH : w->P + (long)tokens[(long)rows[b] * L + t] * GH)
        /* gh = W_hh h + (the input part for cells whose two parts simply add, else b_hh) */
        for (int b = 0; b < B; b++) {
            const float *src = n->cell == RN_GRU ? n->bhh : RN_INPUT(b);
            memcpy(w->gh + (long)b * GH, src, (size_t)GH * sizeof(float));
        }
        if (t > 0) gemm(w->gh, GH, hprev_all, H, 1, n->whhT, GH, B, H, GH, 1);
        for (int b = 0; b < B; b++) {
            const float *hprev = hprev_all + (long)b * H;
            float *hnew = hnew_all + (long)b * H;
            const float *gh = w->gh + (long)b * GH;
            float *act = w->acts + ((long)t * B + b) * GH;
            if (n->cell == RN_SRN || n->cell == RN_RESIDUAL) {
                for (int j = 0; j < H; j += RN_VW) {
                    const vf x = ld(gh + j);
                    const vf a = n->relu ? vsel(x > 0.0f, x, splat(0.0f)) : vtanh(x);
                    st(act + j, a);
                    st(hnew + j, n->cell == RN_RESIDUAL ? ld(hprev + j) + a : a);
                }
            } else if (n->cell == RN_LSTM) {
                const float *cprev = w->cs + ((long)t * B + b) * H;
                float *cnew = w->cs + ((long)(t + 1) * B + b) * H;
                float *tc = w->tcs + ((long)t * B + b) * H;
                for (int j = 0; j < H; j += RN_VW) {
                    const vf i = vsigmoid(ld(gh + j)), f = vsigmoid(ld(gh + H + j));
                    const vf g = vtanh(ld(gh + 2 * H + j)), o = vsigmoid(ld(gh + 3 * H + j));
                    const vf c = f * ld(cprev + j) + i * g;
                    const vf tcj = vtanh(c);
                    st(act + j, i);
                    st(act + H + j, f);
                    st(act + 2 * H + j, g);
                    st(act + 3 * H + j, o);
                    st(cnew + j, c);
                    st(tc + j, tcj);
                    st(hnew + j, o * tcj);
                }
            } else { /* GRU */
                const float *P = RN_INPUT(b);
                float *ghn = w->ghn + ((long)t * B + b) * H;
                for (int j = 0; j < H; j += RN_VW) {
                    const vf r = vsigmoid(ld(P + j) + ld(gh + j));
                    const vf z = vsigmoid(ld(P + H + j) + ld(gh + H + j));
                    const vf hn = ld(gh + 2 * H + j);
                    const vf nn = vtanh(ld(P + 2 * H + j) + r * hn);
                    st(act + j, r);
                    st(act + H + j, z);
                    st(act + 2 * H + j, nn);
                    st(ghn + j, hn);
                    st(hnew + j, nn + z * (ld(hprev + j) - nn));
                }
            }
        }
#undef RN_INPUT
    }
}

/* ---- the head ---- */

/* The states the head reads, one row each, into w->hv: each sequence's last state
 * (classify, regress-last), or, for tag, the state after every step whose label is not
 * -100, ordered by step (with its label yv, step vt, batch row vb, and the rows of
 * step t in tstart[t] .. tstart[t+1]). Returns the number of rows. */
static int head_rows(const Net *n, Work *w, const int32_t *labels, const int32_t *rows, int B) {
    const int L = n->L, H = n->H;
    if (n->head != RN_TAG) {
        memcpy(w->hv, w->hs + (long)L * B * H, (size_t)B * H * sizeof(float));
        if (n->head == RN_CLASSIFY)
            for (int b = 0; b < B; b++) w->yv[b] = labels[rows[b]];
        return B;
    }
    int r = 0;
    for (int t = 0; t < L; t++) {
        w->tstart[t] = r;
        for (int b = 0; b < B; b++) {
            const int32_t y = labels[(long)rows[b] * L + t];
            if (y == RN_IGNORE) continue;
            w->yv[r] = y;
            w->vt[r] = t;
            w->vb[r] = b;
            memcpy(w->hv + (long)r * H, w->hs + ((long)(t + 1) * B + b) * H,
                   (size_t)H * sizeof(float));
            r++;
        }
    }
    w->tstart[L] = r;
    return r;
}

/* logits [R][C'] = fcb + hv W^T */
static void head_forward(const Net *n, const float *hv, int R, float *logits) {
    const int C = n->Cp;
    for (int r = 0; r < R; r++) memcpy(logits + (long)r * C, n->fcb, (size_t)C * sizeof(float));
    gemm(logits, C, hv, n->H, 1, n->fcwT, C, R, n->H, C, 1);
}

/* Cross-entropy of R rows of logits (stride Cp, the first C real) against labels y;
 * overwrites them with d loss / d logits (zero for padded classes). Returns the loss
 * reduced as the trainer does (mean or sum over the rows; the mean of no rows is nan,
 * as in PyTorch). */
static float cross_entropy_backward(float *logits, const int32_t *y, int R, int C, int Cp,
                                    int reduction_sum) {
    if (R == 0) return reduction_sum ? 0.0f : NAN;
    double total = 0.0;
    const float scale = reduction_sum ? 1.0f : 1.0f / (float)R;
    for (int r = 0; r < R; r++) {
        float *restrict l = logits + (long)r * Cp;
        float m = l[0];
        for (int c = 1; c < C; c++) m = l[c] > m ? l[c] : m;
        const float shifted_y = l[y[r]] - m;
        float s = 0.0f;
        for (int c = 0; c < C; c++) {
            l[c] = rn_exp(l[c] - m);
            s += l[c];
        }
        total += (double)(logf(s) - shifted_y); /* -log softmax(l)[y] */
        const float inv = scale / s;
        for (int c = 0; c < C; c++) l[c] *= inv;
        for (int c = C; c < Cp; c++) l[c] = 0.0f;
        l[y[r]] -= scale;
    }
    return reduction_sum ? (float)total : (float)(total / R);
}

/* Squared error of B rows of outputs (stride Cp, the first C real) against the real
 * targets of rows[b]; overwrites them with d loss / d output. Mean over every element
 * (PyTorch's mse_loss) or sum. */
static float mse_backward(float *out, const float *targets, const int32_t *rows, int B, int C,
                          int Cp, int reduction_sum) {
    double total = 0.0;
    const float scale = reduction_sum ? 2.0f : 2.0f / (float)((long)B * C);
    for (int b = 0; b < B; b++) {
        float *restrict o = out + (long)b * Cp;
        for (int c = 0; c < C; c++) {
            const float d = o[c] - targets[(long)rows[b] * C + c];
            total += (double)d * d;
            o[c] = scale * d;
        }
        for (int c = C; c < Cp; c++) o[c] = 0.0f;
    }
    return reduction_sum ? (float)total : (float)(total / ((double)B * C));
}

/* ---- backward through time; writes w->grad (kernel layout) ---- */

static void backward(const Net *n, Work *w, const int32_t *tokens, const int32_t *rows, int B,
                     const float *dlogits, int R) {
    const int L = n->L, H = n->H, GH = n->GH, C = n->Cp, E = n->E, V = n->V;
    float *g = w->grad;
    float *restrict g_emb = g + n->off[0];
    float *restrict g_wihT = g + n->off[1];
    float *restrict g_whhT = g + n->off[2];
    float *restrict g_bih = g + n->off[3];
    float *restrict g_bhh = g + n->off[4];
    float *restrict g_fcwT = g + n->off[5];
    float *restrict g_fcb = g + n->off[6];
    const int tag = n->head == RN_TAG, F = n->F;
    memset(w->Gacc, 0, (size_t)V * GH * sizeof(float));
    memset(w->dc, 0, (size_t)B * H * sizeof(float));
    for (int c = 0; c < C; c += RN_VW) {
        vf acc = splat(0.0f);
        for (int r = 0; r < R; r++) acc += ld(dlogits + (long)r * C + c);
        st(g_fcb + c, acc);
    }
    gemm(g_fcwT, C, w->hv, 1, H, dlogits, C, H, R, C, 0);
    if (tag) {
        /* d loss / d state of every head row, into hv (read above for the last time);
         * each step's rows join dh when the backward pass reaches that step */
        gemm(w->hv, H, dlogits, C, 1, w->fcw, H, R, C, H, 0);
        memset(w->dh, 0, (size_t)B * H * sizeof(float));
    } else {
        gemm(w->dh, H, dlogits, C, 1, w->fcw, H, B, C, H, 0);
    }

    for (int t = L - 1; t >= 0; t--) {
        const float *hprev_all = w->hs + (long)t * B * H;
        float *dghs = w->dghs + (long)t * B * GH;
        if (tag)
            for (int r = w->tstart[t]; r < w->tstart[t + 1]; r++) {
                float *dh = w->dh + (long)w->vb[r] * H;
                const float *d = w->hv + (long)r * H;
                for (int j = 0; j < H; j += RN_VW) st(dh + j, ld(dh + j) + ld(d + j));
            }
        for (int b = 0; b < B; b++) {
            const float *act = w->acts + ((long)t * B + b) * GH;
            const float *hprev = hprev_all + (long)b * H;
            const float *dh = w->dh + (long)b * H;
            float *dhp = w->dhp + (long)b * H;
            float *dgi = w->dgi + (long)b * GH;
            float *dgh = dghs + (long)b * GH;
            /* dhp starts as the part of dL/dh_{t-1} that does not go through W_hh */
            if (n->cell == RN_SRN || n->cell == RN_RESIDUAL) {
                for (int j = 0; j < H; j += RN_VW) {
                    const vf a = ld(act + j), d = ld(dh + j);
                    st(dgh + j, n->relu ? vsel(a > 0.0f, d, splat(0.0f)) : d * (1.0f - a * a));
                    st(dhp + j, n->cell == RN_RESIDUAL ? d : splat(0.0f));
                }
                memcpy(dgi, dgh, (size_t)GH * sizeof(float));
            } else if (n->cell == RN_LSTM) {
                const float *cprev = w->cs + ((long)t * B + b) * H;
                const float *tc = w->tcs + ((long)t * B + b) * H;
                float *dc = w->dc + (long)b * H;
                for (int j = 0; j < H; j += RN_VW) {
                    const vf i = ld(act + j), f = ld(act + H + j), gg = ld(act + 2 * H + j);
                    const vf o = ld(act + 3 * H + j), tcj = ld(tc + j), d = ld(dh + j);
                    const vf dct = ld(dc + j) + d * o * (1.0f - tcj * tcj);
                    st(dgh + j, dct * gg * i * (1.0f - i));
                    st(dgh + H + j, dct * ld(cprev + j) * f * (1.0f - f));
                    st(dgh + 2 * H + j, dct * i * (1.0f - gg * gg));
                    st(dgh + 3 * H + j, d * tcj * o * (1.0f - o));
                    st(dc + j, dct * f);
                    st(dhp + j, splat(0.0f));
                }
                memcpy(dgi, dgh, (size_t)GH * sizeof(float));
            } else { /* GRU */
                const float *ghn = w->ghn + ((long)t * B + b) * H;
                for (int j = 0; j < H; j += RN_VW) {
                    const vf r = ld(act + j), z = ld(act + H + j), nn = ld(act + 2 * H + j);
                    const vf d = ld(dh + j);
                    const vf dn = d * (1.0f - z) * (1.0f - nn * nn);
                    const vf dz = d * (ld(hprev + j) - nn) * z * (1.0f - z);
                    const vf dr = dn * ld(ghn + j) * r * (1.0f - r);
                    st(dgi + j, dr);
                    st(dgi + H + j, dz);
                    st(dgi + 2 * H + j, dn);
                    st(dgh + j, dr);
                    st(dgh + H + j, dz);
                    st(dgh + 2 * H + j, dn * r);
                    st(dhp + j, d * z);
                }
            }
            float *Gv = F ? w->dgis + ((long)t * B + b) * GH
                          : w->Gacc + (long)tokens[(long)rows[b] * L + t] * GH;
            if (F)
                memcpy(Gv, dgi, (size_t)GH * sizeof(float));
            else
                for (int j = 0; j < GH; j += RN_VW) st(Gv + j, ld(Gv + j) + ld(dgi + j));
        }
        if (t > 0) gemm(w->dhp, H, dghs, GH, 1, w->whh, H, B, GH, H, 1);
        float *tmp = w->dh;
        w->dh = w->dhp;
        w->dhp = tmp;
    }

    /* weight_hh: sum over steps t >= 1 of h_{t-1}^T dgh_t, as one product over (t, b) */
    if (L > 1)
        gemm(g_whhT, GH, w->hs + (long)B * H, 1, H, w->dghs + (long)B * GH, GH, H, (L - 1) * B,
             GH, 0);
    else
        memset(g_whhT, 0, (size_t)H * GH * sizeof(float));
    for (int j = 0; j < GH; j += RN_VW) {
        vf acc = splat(0.0f);
        for (long r = 0; r < (long)L * B; r++) acc += ld(w->dghs + r * GH + j);
        st(g_bhh + j, acc);
        vf acc_i = splat(0.0f);
        if (F)
            for (long r = 0; r < (long)L * B; r++) acc_i += ld(w->dgis + r * GH + j);
        else
            for (int v = 0; v < V; v++) acc_i += ld(w->Gacc + (long)v * GH + j);
        st(g_bih + j, acc_i);
    }
    if (F) { /* input weights: sum over (t, b) of x^T dgi, as one product */
        gemm(g_wihT, GH, w->xs, 1, F, w->dgis, GH, F, L * B, GH, 0);
        return;
    }
    /* input weights and embeddings from the per-token sums */
    gemm(g_wihT, GH, n->emb, 1, E, w->Gacc, GH, E, V, GH, 0);
    gemm(g_emb, E, w->Gacc, GH, 1, w->wih, E, V, GH, E, 0);
}

/* ---- clipping and optimisers, as torch.nn.utils and torch.optim do them ---- */

static void clip(const Net *n, float *g, const float *hyper) {
    const long np = n->n_params;
    if (hyper[P_CLIP_VALUE] > 0.0f) {
        const float c = hyper[P_CLIP_VALUE];
        for (long i = 0; i < np; i++) g[i] = g[i] > c ? c : (g[i] < -c ? -c : g[i]);
    }
    if (hyper[P_CLIP_PER_PARAM] > 0.0f) {
        for (int t = 0; t < 7; t++) {
            double ss = 0.0;
            for (long i = n->off[t]; i < n->off[t + 1]; i++) ss += (double)g[i] * g[i];
            const float norm = (float)sqrt(ss);
            float coef = hyper[P_CLIP_PER_PARAM] / (norm + 1e-6f);
            if (coef < 1.0f)
                for (long i = n->off[t]; i < n->off[t + 1]; i++) g[i] *= coef;
        }
    }
    if (hyper[P_CLIP_NORM] > 0.0f) {
        double ss = 0.0;
        for (long i = 0; i < np; i++) ss += (double)g[i] * g[i];
        const float norm = (float)sqrt(ss);
        float coef = hyper[P_CLIP_NORM] / (norm + 1e-6f);
        if (coef < 1.0f)
            for (long i = 0; i < np; i++) g[i] *= coef;
    }
}

static void adam(long np, float *restrict p, const float *restrict g, float *restrict m,
                 float *restrict v, const float *hyper, double step) {
    const float beta1 = hyper[P_BETA1], beta2 = hyper[P_BETA2], eps = hyper[P_EPS];
    const float wd = hyper[P_WD];
    const double bc1 = 1.0 - pow((double)beta1, step);
    const double bc2 = 1.0 - pow((double)beta2, step);
    const float step_size = (float)((double)hyper[P_LR] / bc1);
    const float bc2_sqrt = (float)sqrt(bc2);
    const float w1 = 1.0f - beta1, w2 = 1.0f - beta2;
    for (long i = 0; i < np; i++) {
        const float gi = wd != 0.0f ? g[i] + wd * p[i] : g[i];
        m[i] = m[i] + w1 * (gi - m[i]);
        v[i] = v[i] * beta2 + w2 * gi * gi;
        const float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        p[i] = p[i] - step_size * (m[i] / denom);
    }
}

static void sgd(long np, float *restrict p, const float *restrict g, float *restrict buf,
                const float *hyper, int first) {
    const float lr = hyper[P_LR], wd = hyper[P_WD], mom = hyper[P_MOMENTUM];
    for (long i = 0; i < np; i++) {
        float gi = wd != 0.0f ? g[i] + wd * p[i] : g[i];
        if (mom != 0.0f) {
            buf[i] = first ? gi : buf[i] * mom + gi;
            gi = buf[i];
        }
        p[i] = p[i] - lr * gi;
    }
}

/* Whether every value is finite: one pass, no branch per element. */
static int all_finite(const float *x, long count) {
    int bad = 0;
    for (long i = 0; i < count; i++) bad |= !isfinite(x[i]);
    return !bad;
}

/* Sizes the kernel works with: E and H whole vectors (E is the unpadded feature count
 * for feature inputs), a known head and, for tag, the class labels per step. */
static int net_ok(const Net *n) {
    if (n->H % 16 || (n->F == 0 && n->E % 16) || (n->F > 0 && (n->E != n->F || n->V != 0)))
        return 0;
    return n->head == RN_CLASSIFY || n->head == RN_TAG || n->head == RN_REGRESS;
}

/* One step's loss and d loss / d head output, in w->logits; returns the rows R. */
static int head_loss(const Net *n, Work *w, const int32_t *labels, const float *targets,
                     const int32_t *r, int B, int reduction_sum, float *loss) {
    const int R = head_rows(n, w, labels, r, B);
    head_forward(n, w->hv, R, w->logits);
    *loss = n->head == RN_REGRESS
                ? mse_backward(w->logits, targets, r, B, n->C, n->Cp, reduction_sum)
                : cross_entropy_backward(w->logits, w->yv, R, n->C, n->Cp, reduction_sum);
    return R;
}

/*
 * Run n_steps optimiser steps. Batch s uses the rows rows[offsets[s] .. offsets[s+1]).
 * Inputs: tokens [N][L] (token ids), or feats [N][L][F] (feature inputs; tokens unused).
 * Targets: labels [N] (classify) or [N][L] (tag, -100 = not scored), or targets [N][C]
 * (regress-last; labels unused).
 * opt_a/opt_b: Adam's exp_avg/exp_avg_sq, or SGD's momentum buffer (opt_a).
 * *step counts optimiser steps taken so far (Adam's bias correction, SGD's first step).
 * losses[s] receives each step's training loss.
 * Returns 0, -1 when memory ran out, -2 when E or H is not a multiple of 16, or s+1 when
 * step s failed: its loss was non-finite (losses[s]; the parameters are then left as
 * they were before that step) or, with a finite losses[s], its update made a parameter
 * non-finite.
 */
int rn_train(const int32_t *dims, const float *hyper, float *params, float *opt_a, float *opt_b,
             int64_t *step, const int32_t *tokens, const float *feats, const int32_t *labels,
             const float *targets, const int32_t *rows, const int32_t *offsets, int32_t n_steps,
             float *losses) {
    Net n;
    net_layout(&n, dims);
    net_bind(&n, params);
    if (!net_ok(&n)) return -2;
    if (n.F == 0) feats = NULL;
    int Bmax = 1;
    for (int s = 0; s < n_steps; s++) {
        const int B = offsets[s + 1] - offsets[s];
        Bmax = B > Bmax ? B : Bmax;
    }
    Work w;
    if (work_alloc(&w, &n, Bmax) != 0) return -1;
    int status = 0;
    for (int s = 0; s < n_steps; s++) {
        const int32_t *r = rows + offsets[s];
        const int B = offsets[s + 1] - offsets[s];
        prepare(&n, &w);
        forward(&n, &w, tokens, feats, r, B);
        float loss;
        const int R = head_loss(&n, &w, labels, targets, r, B, dims[D_REDUCTION_SUM], &loss);
        losses[s] = loss;
        if (!isfinite(loss)) {
            status = s + 1;
            break;
        }
        backward(&n, &w, tokens, r, B, w.logits, R);
        clip(&n, w.grad, hyper);
        *step += 1;
        if (dims[D_OPTIM] == RN_ADAM)
            adam(n.n_params, params, w.grad, opt_a, opt_b, hyper, (double)*step);
        else
            sgd(n.n_params, params, w.grad, opt_a, hyper, *step == 1);
        if (!all_finite(params, n.n_params)) {
            status = s + 1; /* losses[s] is finite: the update made the parameters non-finite */
            break;
        }
    }
    work_free(&w);
    return status;
}

/* Outputs of every example of a split, in chunks (forward only): logits or real outputs
 * [N][C] from the last state, or, for tag, logits [N][L][C] at every step. */
int rn_logits(const int32_t *dims, float *params, const int32_t *tokens, const float *feats,
              int32_t N, float *logits) {
    Net n;
    net_layout(&n, dims);
    net_bind(&n, params);
    if (!net_ok(&n)) return -2;
    if (n.F == 0) feats = NULL;
    const int chunk = 64, L = n.L, C = n.C, Cp = n.Cp, H = n.H;
    Work w;
    if (work_alloc(&w, &n, chunk) != 0) return -1;
    int32_t rows[64];
    prepare(&n, &w);
    for (int start = 0; start < N; start += chunk) {
        const int B = N - start < chunk ? N - start : chunk;
        for (int b = 0; b < B; b++) rows[b] = start + b;
        forward(&n, &w, tokens, feats, rows, B);
        if (n.head != RN_TAG) {
            head_forward(&n, w.hs + (long)L * B * H, B, w.logits);
            for (int b = 0; b < B; b++)
                memcpy(logits + (long)(start + b) * C, w.logits + (long)b * Cp,
                       (size_t)C * sizeof(float));
            continue;
        }
        /* every step's state, step-major in hs[1..L]: rows (t, b) */
        head_forward(&n, w.hs + (long)B * H, L * B, w.logits);
        for (int t = 0; t < L; t++)
            for (int b = 0; b < B; b++)
                memcpy(logits + ((long)(start + b) * L + t) * C,
                       w.logits + ((long)t * B + b) * Cp, (size_t)C * sizeof(float));
    }
    work_free(&w);
    return 0;
}
