/* SPDX-License-Identifier: ISC */
/*
 * Metrics registry: counters, gauges and histograms declared in
 * core/metrics_def.h, kept in per-thread shards and summed on scrape
 * (DESIGN.md: "Metrics are per-worker shards summed on scrape").
 *
 * Writing. Each worker thread creates a shard at start-up and binds it with
 * lv_metrics_bind_thread(); from then on lv_metric_add(), lv_metric_set() and
 * lv_metric_observe() on that thread touch only that shard, with relaxed
 * atomic stores and no lock. Threads that never bind a shard (main thread,
 * helper threads, unit tests) write to one process-wide fallback shard with
 * atomic read-modify-write operations, so they are safe too, only slower.
 *
 * Reading. lv_metrics_sum() and lv_metrics_render() take the list of worker
 * shards, add the fallback shard themselves, and sum each series with
 * relaxed loads, from any thread, while workers keep writing. A scrape is not
 * a consistent snapshot across series; each value is. Gauges are summed like
 * counters: every worker counts its own connections.
 *
 * Label arguments are indices from the LV_ML_<SET>_<VALUE> enums generated
 * from metrics_def.h, 0 for families without a label. An out-of-range index
 * or a wrong-type call (lv_metric_observe() on a counter, ...) is a bug: it
 * asserts in LV_DEBUG builds and is ignored otherwise.
 *
 * Rendering produces the Prometheus text exposition format 0.0.4 into an
 * lv_buf_t and does no I/O; admin/http.c serves the buffer. Modules that own
 * dynamically labelled series (per pool, per backend) append them after
 * lv_metrics_render() with lv_metrics_render_family() and
 * lv_metrics_render_sample(), which apply the same escaping rules.
 *
 * Lifetimes: shards are owned by whoever created them (a worker, for the
 * process lifetime) and must outlive every render that lists them. The
 * fallback shard is static.
 */
#ifndef LEVEE_CORE_METRICS_H
#define LEVEE_CORE_METRICS_H

#include "core/lv.h"
#include "core/buf.h"
#include "core/metrics_def.h"

typedef enum lv_metric_type {
	LV_METRIC_COUNTER = 0,   /* int64 per series, only goes up; rendered as "counter" */
	LV_METRIC_GAUGE = 1,     /* int64 per series, up and down; rendered as "gauge" */
	LV_METRIC_HISTOGRAM = 2, /* bucket counts and a sum per series; rendered as "histogram" */
	LV_METRIC_SIZE_HISTOGRAM = 3, /* the same for plain numbers (LV_METRIC_SIZE_BUCKETS) */
} lv_metric_type_t;

/* One value per family in metrics_def.h: LV_M_CLIENT_CONNECTIONS, LV_M_ERRORS_TOTAL, ... */
typedef enum lv_metric_id {
#define XX(id, type, name, help, label_name, set) LV_M_##id,
	LV_METRICS_DEF(XX)
#undef XX
	LV_M__COUNT
} lv_metric_id_t;

/*
 * Label indices, one anonymous enum per label set: LV_ML_ERROR_KIND_OOM,
 * LV_ML_CLIENT_STATE_IDLE, ... and LV_ML_<SET>__COUNT.
 */
#define LV__ML_VALUE(set, value, str) LV_ML_##set##_##value,
#define LV__ML_ENUM(set)                                            \
	enum {                                                      \
		LV_ML_##set(LV__ML_VALUE, set) LV_ML_##set##__COUNT \
	};
LV_METRIC_LABEL_SETS(LV__ML_ENUM)
#undef LV__ML_ENUM

/* Number of finite histogram buckets (LV_METRIC_BUCKETS); +Inf comes on top. */
#define LV__MB_ONE(bound, str) +1
enum {
	LV_METRIC_N_BUCKETS = 0 LV_METRIC_BUCKETS(LV__MB_ONE)
};
#undef LV__MB_ONE

/* Number of finite buckets of SIZE_HISTOGRAM families (LV_METRIC_SIZE_BUCKETS). */
#define LV__MB_ONE(bound, str) +1
enum {
	LV_METRIC_N_SIZE_BUCKETS = 0 LV_METRIC_SIZE_BUCKETS(LV__MB_ONE)
};
#undef LV__MB_ONE

typedef struct lv_metrics_shard lv_metrics_shard_t;

/* ------------------------------------------------------------------ shards */

/* Allocates a zeroed shard; NULL on OOM. The caller owns it. */
lv_metrics_shard_t *lv_metrics_shard_new(void) LV_MUSTCHECK;
/* Frees s (NULL is a no-op). No thread may still be bound to it, nor a render list it. */
void lv_metrics_shard_free(lv_metrics_shard_t *s);
/* Makes s the calling thread's shard; NULL unbinds (writes go to the fallback shard). */
void lv_metrics_bind_thread(lv_metrics_shard_t *s);
/* The shard the calling thread writes to: its bound shard, else the fallback. */
lv_metrics_shard_t *lv_metrics_thread_shard(void);

/* ----------------------------------------------------------------- writing */

/* Adds delta to a counter (delta >= 0) or gauge series of the calling thread's shard. */
void lv_metric_add(lv_metric_id_t id, unsigned label, int64_t delta);
/* Sets a gauge series of the calling thread's shard to v (the scrape sums all shards). */
void lv_metric_set(lv_metric_id_t id, unsigned label, int64_t v);
/* Records one histogram observation of seconds; negative values count as 0, NaN is ignored. */
void lv_metric_observe(lv_metric_id_t id, unsigned label, double seconds);
/* Same as lv_metric_observe() with a duration in microseconds (what core/time.h gives). */
void lv_metric_observe_us(lv_metric_id_t id, unsigned label, int64_t us);

/* Records one observation of a SIZE_HISTOGRAM family (a count, not seconds); v < 0 counts as 0. */
void lv_metric_observe_value(lv_metric_id_t id, unsigned label, int64_t v);

/* Adds one to an unlabelled counter. */
static inline void lv_metric_inc(lv_metric_id_t id)
{
	lv_metric_add(id, 0, 1);
}

/* Adds one to the series of a labelled counter. */
static inline void lv_metric_inc_l(lv_metric_id_t id, unsigned label)
{
	lv_metric_add(id, label, 1);
}

/* ----------------------------------------------------------------- reading */

/*
 * Sum of one series over shards[0..n) (NULL entries skipped) plus the
 * fallback shard: the value of a counter or gauge, the number of observations
 * of a histogram. 0 for an invalid id or label.
 */
int64_t lv_metrics_sum(lv_metrics_shard_t *const *shards, size_t n, lv_metric_id_t id,
		       unsigned label);
/* Sum of the observed seconds of a histogram series, summed like lv_metrics_sum(). */
double lv_metrics_sum_seconds(lv_metrics_shard_t *const *shards, size_t n, lv_metric_id_t id,
			      unsigned label);

/* Family metadata for SHOW STATS and the like; strings are static. */
const char *lv_metric_name(lv_metric_id_t id);
lv_metric_type_t lv_metric_type(lv_metric_id_t id);
/* Number of series (label values), 1 for an unlabelled family, 0 for an invalid id. */
unsigned lv_metric_n_series(lv_metric_id_t id);
/* Label value of a series ("idle"); NULL when the family has no label or label is too big. */
const char *lv_metric_label_value(lv_metric_id_t id, unsigned label);

/* --------------------------------------------------------------- rendering */

/*
 * Appends every family of metrics_def.h, summed over shards[0..n) and the
 * fallback shard, in the Prometheus text format 0.0.4: "# HELP", "# TYPE",
 * one line per series, and for histograms cumulative _bucket{le="..."}
 * lines ending with le="+Inf", then _sum (seconds) and _count. Returns false
 * on OOM with out unchanged.
 */
bool lv_metrics_render(lv_metrics_shard_t *const *shards, size_t n, lv_buf_t *out) LV_MUSTCHECK;

/*
 * Appends "# HELP name help" (help escaped) and "# TYPE name type" for a
 * family rendered by another module; type is "counter", "gauge", "histogram"
 * or "untyped". Returns false on OOM or an invalid metric name, with out
 * unchanged.
 */
bool lv_metrics_render_family(lv_buf_t *out, const char *name, const char *help,
			      const char *type) LV_MUSTCHECK;

/*
 * Appends one sample line: name{k1="v1",k2="v2"} v. labels_kv is NULL or a
 * NULL-terminated array of name, value pairs; values are escaped (\\, \",
 * \n). v is written as an integer when it is one, else with enough digits to
 * read back exactly; NaN and infinities as NaN, +Inf, -Inf. Returns false on
 * OOM or an invalid metric or label name, with out unchanged.
 */
bool lv_metrics_render_sample(lv_buf_t *out, const char *name, const char *const labels_kv[],
			      double v) LV_MUSTCHECK;

#endif
