/*
 * Runs the engine kernel on fixed pseudo-random models and data, for every cell, and
 * prints each step's loss and a checksum of the final parameters, one number a line.
 * tests/test_engine_variants.py builds it for each vector variant (SSE, AVX2, NEON
 * under qemu) and compares the outputs: the variants must compute the same numbers.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

long rn_num_params(const int32_t *dims);
int rn_train(const int32_t *dims, const float *hyper, float *params, float *opt_a, float *opt_b,
             int64_t *step, const int32_t *tokens, const float *feats, const int32_t *labels,
             const float *targets, const int32_t *rows, const int32_t *offsets, int32_t n_steps,
             float *losses);
const char *rn_variant(void);

static uint32_t state = 12345u;
static uint32_t next(void) {
    state = state * 1664525u + 1013904223u;
    return state >> 8;
}

/* head 0: classify token sequences; 1: tag them (labels -100 at about half the steps);
 * 2: regress-last on 3 real features per step (two outputs) */
int main(void) {
    enum { N = 64, STEPS = 40, B = 8, L = 7, F = 3 };
    printf("# %s\n", rn_variant());
    for (int head = 0; head < 3; head++) {
        for (int cell = 0; cell < 4; cell++) {
            for (int sgd = 0; sgd < 2; sgd++) {
                const int classes = head == 2 ? 2 : 19;
                int32_t dims[11] = {cell, 0, head == 2 ? 0 : 10, head == 2 ? F : 16, 32,
                                    classes, L, sgd, 0, head, head == 2 ? F : 0};
                const long np = rn_num_params(dims);
                float *p = calloc(np, 4), *a = calloc(np, 4), *b = calloc(np, 4);
                for (long i = 0; i < np; i++) p[i] = ((float)(next() % 2001) - 1000.0f) * 2e-4f;
                static int32_t tokens[N * L], labels[N * L], rows[STEPS * B], offsets[STEPS + 1];
                static float feats[N * L * F], targets[N * 2];
                for (int i = 0; i < N * L; i++) tokens[i] = (int32_t)(next() % 10);
                for (int i = 0; i < N * L * F; i++) feats[i] = (float)(next() % 1001) * 1e-3f;
                for (int i = 0; i < N * 2; i++) targets[i] = (float)(next() % 1001) * 2e-3f;
                for (int i = 0; i < N * L; i++)
                    labels[i] = (int32_t)(next() % 19);
                if (head == 1)
                    for (int i = 0; i < N * L; i++)
                        if (next() % 2) labels[i] = -100;
                for (int s = 0; s <= STEPS; s++) offsets[s] = s * B;
                for (int i = 0; i < STEPS * B; i++) rows[i] = (int32_t)(next() % N);
                /* Adam, or SGD with momentum and global-norm clipping (LSTM clips under Adam too) */
                float hyper[9] = {sgd ? 0.02f : 3e-3f, 0.9f, 0.999f, 1e-8f, 0, sgd ? 0.5f : 0,
                                  sgd || cell == 2 ? 1.0f : 0, 0, 0};
                float losses[STEPS];
                int64_t step = 0;
                const int status = rn_train(dims, hyper, p, a, b, &step, tokens, feats, labels,
                                            targets, rows, offsets, STEPS, losses);
                if (status != 0) return 10 + status;
                for (int s = 0; s < STEPS; s++) printf("%.9g\n", losses[s]);
                double sum = 0.0;
                for (long i = 0; i < np; i++) sum += (double)p[i] * (double)(i % 7 + 1);
                printf("%.9g\n", sum);
                free(p);
                free(a);
                free(b);
            }
        }
    }
    return 0;
}
