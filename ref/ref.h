/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 The libstill authors */
/*
 * ref.h -- the oracle's internal functions (double precision).
 *
 * One small function per formula of SPEC, written for reading.  Every
 * function works on ONE head with its arrays gathered contiguously in
 * double: q [N][d], k [N][d], v [N][dv], gate [N][dv].  The public entry
 * points (lib/ref_api.c) gather, loop over (batch, head), and scatter.
 * The decode state and the gradients call these same functions.
 */
#ifndef STILL_REF_H
#define STILL_REF_H

#include "internal.h"

/* SPEC §0: s(t,j) = scale * <q_t, k_j>. */
double still__ref_logit(const still__resolved *r, const double *q_t, const double *k_j);

/* SPEC §2: phi(x) of one vector x [d] with the map of query head `head`
 * (fm == NULL: identity W, no b, no u); writes phi [r->m]. */
void still__ref_feature_map(const still__resolved *r, const still_feature_map *fm,
                            int64_t f, int64_t head, const double *x, double *phi);

/* SPEC §4: sigma of token t from its query q_t and the keys of its window
 * W_t, keys [n][d] with n = |W_t| and the LAST row being k_t itself.
 * n == 1 gives +inf. */
double still__ref_saliency_window(const still__resolved *r, const double *q_t,
                                  const double *keys, int64_t n);

/* App. A.1: sigma of token t from its query q_t and keys [..][d], the keys
 * from position key0 on, which must hold every key in a slot of t
 * (positions max(0, t - C + 1) .. t).  Costs O(min(t + 1, C)). */
double still__ref_saliency_authors(const still__resolved *r, const double *q_t,
                                   const double *keys, int64_t key0, int64_t t);

/* App. A.3: sigma of a decoded token from q_t and the keys of its window
 * W_t, keys [n][d] with the LAST row being k_t itself, n >= 2: logits
 * without the scale, the overwrite on t's own slot, l = r->C. */
double still__ref_saliency_authors_decode(const still__resolved *r, const double *q_t,
                                          const double *keys, int64_t n);

/* sigma of token t of one head, q [N][d], k [N][d]: SPEC §4, or App. A.1
 * when r->saliency == STILL_SALIENCY_AUTHORS. */
double still__ref_saliency_of(const still__resolved *r, const double *q, const double *k,
                              int64_t t);

/* sigma [N] of every token of one head (still__ref_saliency_of each). */
void still__ref_saliency(const still__resolved *r, const double *q, const double *k,
                         int64_t N, double *sigma);

/* SPEC §5: sel [N] = 1 for the k tokens of largest sigma of every complete
 * chunk (ties to the smaller position), 0 elsewhere. */
void still__ref_select(const still__resolved *r, const double *sigma, int64_t N,
                       uint8_t *sel);

/* SPEC §5-6: which keys j <= t are exact for query t (exact[j] = 1) and
 * which are linear (exact[j] = 0), for every routing, L and the cap
 * (cache = the max_sel selected tokens of split chunks of largest sigma,
 * ties to the newer).  exact has t + 1 entries. */
void still__ref_route(const still__resolved *r, const double *sigma, const uint8_t *sel,
                      int64_t t, uint8_t *exact);

/* The exact sets of the routings (one file each, named after the method),
 * with still__ref_route's contract; sigma and sel are read by the ones that
 * select (saliency, all, none). */
void still__ref_route_saliency(const still__resolved *r, const double *sigma,
                               const uint8_t *sel, int64_t t, uint8_t *exact);
void still__ref_route_window(const still__resolved *r, const double *sigma,
                             const uint8_t *sel, int64_t t, uint8_t *exact);
void still__ref_route_sinks(const still__resolved *r, const double *sigma,
                            const uint8_t *sel, int64_t t, uint8_t *exact);
void still__ref_route_terraced(const still__resolved *r, const double *sigma,
                               const uint8_t *sel, int64_t t, uint8_t *exact);

/* SPEC §6: output o_t [dv] of query t, given its routing.  phi_q [m] is
 * phi_q(q_t), phi_k [N][m] the key features, gate_t [dv] or NULL,
 * omega the window factor (1 for STILL). */
void still__ref_hybrid(const still__resolved *r, int64_t t, const double *q_t,
                       const double *k, const double *v, const double *phi_q,
                       const double *phi_k, const double *gate_t, double omega,
                       const uint8_t *exact, double *o_t);

/* SPEC §1: softmax attention of query t over the keys first..t, o_t [dv]. */
void still__ref_softmax_range(const still__resolved *r, int64_t first, int64_t t,
                              const double *q_t, const double *k, const double *v, double *o_t);

/* SPEC §1: full causal softmax output of query t, o_t [dv]. */
void still__ref_teacher_row(const still__resolved *r, int64_t t, const double *q_t,
                            const double *k, const double *v, double *o_t);

/* ---- helpers added with the implementation ------------------------------ */

/* SPEC §2: the map `which` (STILL_MAP_Q or STILL_MAP_K; fk tied to fq when
 * params->fk_tied) of params, NULL for the defaults; *f its rows. */
const still_feature_map *still__ref_map_of(const still__resolved *r, const still_params *params,
                                           int which, int64_t *f);

/* SPEC §2: phi [n][r->m] of the rows x [n][d] with map `which` of `head`. */
void still__ref_feature_rows(const still__resolved *r, const still_params *params, int which,
                             int64_t head, int64_t n, const double *x, double *phi);

/* 1/(1+e^{-x}) without overflow. */
double still__ref_sigmoid(double x);

/* SPEC §6: omega = sigmoid(params->window_w[head]), or 1 without them. */
double still__ref_omega(const still_params *params, int64_t head);

/* SPEC §6: G [B][Hq][N][dv] = sigmoid(X Wg^T), X [B][N][hidden],
 * Wg [Hq*dv][hidden]. */
void still__ref_gate_projection(int64_t batch, int64_t seq_len, int64_t hidden,
                                int64_t heads_q, int64_t dim_v, const double *X,
                                const double *Wg, double *G);

/* SPEC §5-6: the output o_t [dv] of query t of query head `head` given its
 * sigma [N], selection sel [N] and key features phi_k [N][m]; phi_q [m]
 * and exact [N] are scratch. */
void still__ref_query_forward(const still__resolved *r, const still_params *params,
                              int64_t head, int64_t t, const double *q, const double *k,
                              const double *v, const double *gate, const double *sigma,
                              const uint8_t *sel, const double *phi_k, double *phi_q,
                              uint8_t *exact, double *o_t);

/* SPEC §5-6: the output o [N][dv] of query head `head` given its sigma [N]
 * and selection sel [N] (gate NULL = ones); phi_q [m], phi_k [N][m] and
 * exact [N] are scratch. */
void still__ref_head_forward(const still__resolved *r, const still_params *params,
                             int64_t head, const double *q, const double *k, const double *v,
                             const double *gate, const double *sigma, const uint8_t *sel,
                             double *phi_q, double *phi_k, uint8_t *exact, double *o);

/* ---- SPEC §15: routing lte (learned token eviction) -------------------- */

/* The widest layer of the network (max c_l), and its right margin
 * m = sum of the n dilations (saturated). */
int64_t still__ref_lte_width(const still_lte_params *p);
int64_t still__ref_lte_margin(const still_lte_params *p, const int64_t *dilation);

/* r [N] of kv head `head` from its network input X [N][c0], with the
 * dilations dilation [n]; scratch holds 2 N still__ref_lte_width(p). */
void still__ref_lte_score(const still_lte_params *p, const int64_t *dilation, int64_t head,
                          int64_t N, const double *X, double *scratch, double *score);

/* The streaming cache (r->sinks, r->w, r->budget) run over the N queries:
 * evicted_at [N] = the query at which position j is evicted (its exact
 * set no longer holds it), INT64_MAX when never. */
void still__ref_lte_cache(const still__resolved *r, const double *score, int64_t N,
                          int64_t *evicted_at);

/* exact [t+1] of query t: 1 for sinks ∪ retained ∪ window. */
void still__ref_lte_exact(const int64_t *evicted_at, int64_t t, uint8_t *exact);

/* retained [N] = 1 for the tokens retained after the last query N-1
 * (sinks and window excluded). */
void still__ref_lte_retained(const still__resolved *r, const int64_t *evicted_at, int64_t N,
                             uint8_t *retained);

/* ---- SPEC §16: mixer liger ---------------------------------------------- */

/* o_t [dv] = α·SWA_t + β·GLA_t of query t (r->alpha, r->beta, r->w):
 * q_t [d]; k [N][d], v [N][dv], k_lin [N][d] of its kv head; q_lin_t [d].
 * decay = 0 forces g = 0 (tests).  scratch holds 3 d + dv doubles. */
void still__ref_liger_row(const still__resolved *r, int64_t t, const double *q_t,
                          const double *k, const double *v, const double *q_lin_t,
                          const double *k_lin, int decay, double *scratch, double *o_t);

/* φ(x) [d] = softmax(x) over the head dimension, no scale (SPEC §16). */
void still__ref_liger_map(int64_t d, const double *x, double *phi);

/* log(sigmoid(x)), stable for every finite x. */
double still__ref_logsigmoid(double x);

/* The decode form of GLA (SPEC §16), one kv head's S [d][dv]:
 * update: S = diag(e^{g_t}) S + φ(k_lin,t) v_t^T (decay = 0: g = 0),
 * phi_k [d] scratch; read: gla [dv] = S^T φ(q_lin,t), phi_q [d] scratch. */
void still__ref_liger_update(int64_t d, int64_t dv, const double *k_lin_t, const double *v_t,
                             int decay, double *phi_k, double *S);
void still__ref_liger_read(int64_t d, int64_t dv, const double *S, const double *q_lin_t,
                           double *phi_q, double *gla);

/* ---- SPEC §17: routing nsa (native sparse attention) ----------------- */

/* The blocks of r->nsa_block positions visible to query t (complete by
 * then): blocks 0..still__ref_nsa_visible(r, t) - 1. */
int64_t still__ref_nsa_visible(const still__resolved *r, int64_t t);

/* The compressed keys k_cmp [N/BS][d] and values v_cmp [N/BS][dv] of one
 * kv head: the means of its complete blocks of k [N][d], v [N][dv]. */
void still__ref_nsa_compress(const still__resolved *r, int64_t N, const double *k,
                             const double *v, double *k_cmp, double *v_cmp);

/* The compressed branch of query t: weight [visible] = the softmax over the
 * visible blocks of scale <q_t, k~_c>, o_cmp [dv] = their mean of v~_c (0,
 * with weight untouched, when no block is visible). */
void still__ref_nsa_compressed(const still__resolved *r, int64_t t, const double *q_t,
                               const double *k_cmp, const double *v_cmp, double *weight,
                               double *o_cmp);

/* The selection of query t from the group's block scores p [visible]
 * (the mean compressed weights): blocks [n] in ascending order, n =
 * min(S, floor(t/BS) + 1) returned; chosen [floor(t/BS) + 1] is scratch. */
int64_t still__ref_nsa_select(const still__resolved *r, int64_t t, const double *p,
                              uint8_t *chosen, int64_t *blocks);

/* o_t [dv] = g_cmp o_cmp + g_slc o_slc + g_swa o_swa of query t (q_t [d];
 * k [N][d], v [N][dv] of its kv head; its n selected blocks; gates_t [3]
 * or NULL for ones); scratch holds 2 dv doubles. */
void still__ref_nsa_row(const still__resolved *r, int64_t t, const double *q_t,
                        const double *k, const double *v, const double *o_cmp,
                        const int64_t *blocks, int64_t n, const double *gates_t,
                        double *scratch, double *o_t);

/* SPEC §18 for query t of routing nsa, its n selected blocks held fixed:
 * o_t [dv] recomputed, and for the upstream gradient do_t [dv] the gates'
 * gradients dgates_t [3] (written), the query's dq_t [d] and the rows of
 * dk [N][d], dv [N][dv], dk_cmp [N/BS][d], dv_cmp [N/BS][dv] (added
 * into; the caller spreads dk_cmp, dv_cmp over their blocks).  idx holds
 * max(N, w) entries, scratch 2 dv + max(N, w) doubles. */
void still__ref_nsa_row_vjp(const still__resolved *r, int64_t t, const double *q_t,
                            const double *k, const double *v, const double *k_cmp,
                            const double *v_cmp, const int64_t *blocks, int64_t n,
                            const double *gates_t, const double *do_t, int64_t *idx,
                            double *scratch, double *o_t, double *dgates_t, double *dq_t,
                            double *dk, double *dv, double *dk_cmp, double *dv_cmp);

#endif /* STILL_REF_H */
