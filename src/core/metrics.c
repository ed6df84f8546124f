/* SPDX-License-Identifier: ISC */
/*
 * Metrics registry and Prometheus text rendering; see metrics.h for the
 * threading contract.
 *
 * Layout. Every series of every family in metrics_def.h owns a fixed run of
 * int64 slots in a shard, computed at compile time:
 *
 *   counter, gauge   1 slot per series: the value
 *   histogram        LV_METRIC_N_BUCKETS + 2 slots per series: one count per
 *                    finite bucket (not cumulative), one for observations
 *                    above the last bound (+Inf), and the sum of the
 *                    observations in microseconds
 *   size histogram   the same with LV_METRIC_N_SIZE_BUCKETS buckets, and the
 *                    sum of the plain values (batch sizes, not seconds)
 *
 *   shard.slot[]:  | CLIENT_CONNECTIONS x6 | SERVER_CONNECTIONS x5 | ... |
 *                    ^ families[id].off
 *
 * A shard is therefore one flat array, allocated once. Bucket counts are not
 * cumulative in storage so that an observation touches two slots only; the
 * renderer accumulates them. A histogram's _count is the sum of its buckets,
 * read in one pass so the +Inf bucket and _count always agree.
 *
 * Writes. A bound worker shard has one writer, its thread, so a write is a
 * relaxed load and a relaxed store (no locked instruction); the scraper's
 * relaxed loads see whole values. The fallback shard can have several
 * writers and uses atomic fetch-and-add instead.
 *
 * Owns: nothing beyond the shards callers allocate; the fallback shard and
 * all tables are static. Rendering allocates only inside the caller's buffer.
 */
#include "core/metrics.h"
#include "core/mem.h"

#include <inttypes.h>

/* ------------------------------------------------------------------ layout */

enum {
	HIST_SLOTS = LV_METRIC_N_BUCKETS + 2, /* finite buckets, +Inf bucket, sum in us */
	HIST_INF = LV_METRIC_N_BUCKETS,       /* slot of the +Inf bucket within a series */
	HIST_SUM = LV_METRIC_N_BUCKETS + 1,   /* slot of the sum within a series */
};

enum {
	SHIST_SLOTS = LV_METRIC_N_SIZE_BUCKETS + 2, /* the same layout for SIZE_HISTOGRAM */
	SHIST_INF = LV_METRIC_N_SIZE_BUCKETS,
	SHIST_SUM = LV_METRIC_N_SIZE_BUCKETS + 1, /* sum of the values themselves */
};

#define SLOTS_COUNTER 1
#define SLOTS_GAUGE 1
#define SLOTS_HISTOGRAM HIST_SLOTS
#define SLOTS_SIZE_HISTOGRAM SHIST_SLOTS
#define N_SERIES(set) (LV_ML_##set##__COUNT > 0 ? LV_ML_##set##__COUNT : 1)

/* OFF_<ID> is the first slot of a family; the enumerator after it starts the next one. */
enum slot_layout {
#define XX(id, type, name, help, label_name, set) \
	OFF_##id, OFF_LAST_##id = OFF_##id + N_SERIES(set) * SLOTS_##type - 1,
	LV_METRICS_DEF(XX)
#undef XX
	N_SLOTS
};

struct lv_metrics_shard {
	char pad_head[64]; /* keeps other threads' data off the first cache line */
	int64_t slot[N_SLOTS];
	char pad_tail[64]; /* and off the last one */
};

/* Label values per set, NULL-terminated (a set may be unused by any family yet). */
#define LABEL_STR(set, value, str) str,
#define LABEL_ARRAY(set) \
	static const char *const labels_##set[] LV_UNUSED = {LV_ML_##set(LABEL_STR, set) NULL};
LV_METRIC_LABEL_SETS(LABEL_ARRAY)
#undef LABEL_ARRAY
#undef LABEL_STR

typedef struct family {
	const char *name;
	const char *help;
	const char *label_name;          /* NULL when unlabelled */
	const char *const *label_values; /* n_labels entries and a NULL */
	lv_metric_type_t type;
	unsigned n_labels; /* 0 when unlabelled */
	unsigned n_series; /* max(n_labels, 1) */
	unsigned off;      /* first slot in a shard */
} family_t;

static const family_t families[LV_M__COUNT] = {
#define XX(id, type_, name_, help_, label_name_, set) \
	[LV_M_##id] = {                               \
		.name = name_,                        \
		.help = help_,                        \
		.label_name = label_name_,            \
		.label_values = labels_##set,         \
		.type = LV_METRIC_##type_,            \
		.n_labels = LV_ML_##set##__COUNT,     \
		.n_series = N_SERIES(set),            \
		.off = OFF_##id,                      \
	},
	LV_METRICS_DEF(XX)
#undef XX
};

#define BOUND_S(bound, str) bound,
#define BOUND_US(bound, str) (int64_t)((bound)*1e6 + 0.5),
#define BOUND_STR(bound, str) str,
static const double bucket_s[LV_METRIC_N_BUCKETS] = {LV_METRIC_BUCKETS(BOUND_S)};
static const int64_t bucket_us[LV_METRIC_N_BUCKETS] = {LV_METRIC_BUCKETS(BOUND_US)};
static const char *const bucket_str[LV_METRIC_N_BUCKETS] = {LV_METRIC_BUCKETS(BOUND_STR)};
#undef BOUND_S
#undef BOUND_US
#undef BOUND_STR

#define SBOUND(bound, str) (int64_t)(bound),
#define SBOUND_STR(bound, str) str,
static const int64_t size_bucket[LV_METRIC_N_SIZE_BUCKETS] = {LV_METRIC_SIZE_BUCKETS(SBOUND)};
static const char *const size_bucket_str[LV_METRIC_N_SIZE_BUCKETS] = {
	LV_METRIC_SIZE_BUCKETS(SBOUND_STR)};
#undef SBOUND
#undef SBOUND_STR

static const char *const type_names[] = {"counter", "gauge", "histogram", "histogram"};

/* Bucket geometry of a histogram family: seconds (sum in us) or plain numbers. */
typedef struct hist_geom {
	unsigned n_buckets; /* finite buckets */
	unsigned slots;     /* per series */
	const char *const *bound_str;
	double sum_scale;   /* stored sum / sum_scale = rendered _sum */
} hist_geom_t;

/* ------------------------------------------------------------------ shards */

static lv_metrics_shard_t fallback;
static _Thread_local lv_metrics_shard_t *bound_shard;

lv_metrics_shard_t *lv_metrics_shard_new(void)
{
	return lv_calloc(1, sizeof(lv_metrics_shard_t));
}

void lv_metrics_shard_free(lv_metrics_shard_t *s)
{
	if (!s)
		return;
	LV_ASSERT(s != &fallback);
	if (bound_shard == s)
		bound_shard = NULL;
	lv_free(s);
}

void lv_metrics_bind_thread(lv_metrics_shard_t *s)
{
	bound_shard = s;
}

lv_metrics_shard_t *lv_metrics_thread_shard(void)
{
	return bound_shard ? bound_shard : &fallback;
}

/* ----------------------------------------------------------------- writing */

/* The family of id if id, label and the type are valid for this call, else NULL. */
static const family_t *family_for(lv_metric_id_t id, unsigned label, unsigned type_mask)
{
	LV_ASSERT((unsigned)id < LV_M__COUNT);
	if ((unsigned)id >= LV_M__COUNT)
		return NULL;
	const family_t *f = &families[id];
	LV_ASSERT(label < f->n_series);
	LV_ASSERT(type_mask & (1u << f->type));
	if (label >= f->n_series || !(type_mask & (1u << f->type)))
		return NULL;
	return f;
}

static void slot_add(lv_metrics_shard_t *s, unsigned i, int64_t delta)
{
	int64_t *p = &s->slot[i];
	if (s == &fallback) {
		__atomic_fetch_add(p, delta, __ATOMIC_RELAXED);
	} else {
		uint64_t v = (uint64_t)__atomic_load_n(p, __ATOMIC_RELAXED) + (uint64_t)delta;
		__atomic_store_n(p, (int64_t)v, __ATOMIC_RELAXED);
	}
}

static int64_t slot_load(const lv_metrics_shard_t *s, unsigned i)
{
	return __atomic_load_n(&s->slot[i], __ATOMIC_RELAXED);
}

#define MASK(t) (1u << (t))

void lv_metric_add(lv_metric_id_t id, unsigned label, int64_t delta)
{
	const family_t *f = family_for(id, label, MASK(LV_METRIC_COUNTER) | MASK(LV_METRIC_GAUGE));
	if (!f)
		return;
	LV_ASSERT(delta >= 0 || f->type == LV_METRIC_GAUGE);
	slot_add(lv_metrics_thread_shard(), f->off + label, delta);
}

void lv_metric_set(lv_metric_id_t id, unsigned label, int64_t v)
{
	const family_t *f = family_for(id, label, MASK(LV_METRIC_GAUGE));
	if (!f)
		return;
	__atomic_store_n(&lv_metrics_thread_shard()->slot[f->off + label], v, __ATOMIC_RELAXED);
}

static hist_geom_t hist_geom(const family_t *f)
{
	if (f->type == LV_METRIC_SIZE_HISTOGRAM)
		return (hist_geom_t){LV_METRIC_N_SIZE_BUCKETS, SHIST_SLOTS, size_bucket_str, 1.0};
	return (hist_geom_t){LV_METRIC_N_BUCKETS, HIST_SLOTS, bucket_str, 1e6};
}

static void observe(const family_t *f, unsigned label, unsigned bucket, int64_t us)
{
	lv_metrics_shard_t *s = lv_metrics_thread_shard();
	hist_geom_t g = hist_geom(f);
	unsigned base = f->off + label * g.slots;
	slot_add(s, base + bucket, 1);
	slot_add(s, base + g.n_buckets + 1, us);
}

void lv_metric_observe_value(lv_metric_id_t id, unsigned label, int64_t v)
{
	const family_t *f = family_for(id, label, MASK(LV_METRIC_SIZE_HISTOGRAM));
	if (!f)
		return;
	if (v < 0)
		v = 0;
	unsigned b = 0;
	while (b < LV_METRIC_N_SIZE_BUCKETS && v > size_bucket[b])
		b++;
	observe(f, label, b, v);
}

void lv_metric_observe_us(lv_metric_id_t id, unsigned label, int64_t us)
{
	const family_t *f = family_for(id, label, MASK(LV_METRIC_HISTOGRAM));
	if (!f)
		return;
	if (us < 0)
		us = 0;
	unsigned b = 0;
	while (b < LV_METRIC_N_BUCKETS && us > bucket_us[b])
		b++;
	observe(f, label, b, us);
}

void lv_metric_observe(lv_metric_id_t id, unsigned label, double seconds)
{
	const family_t *f = family_for(id, label, MASK(LV_METRIC_HISTOGRAM));
	if (!f || seconds != seconds)
		return;
	if (seconds < 0)
		seconds = 0;
	if (seconds > 1e9) /* a billion seconds: keeps the microsecond sum in range */
		seconds = 1e9;
	unsigned b = 0;
	while (b < LV_METRIC_N_BUCKETS && seconds > bucket_s[b])
		b++;
	observe(f, label, b, (int64_t)(seconds * 1e6 + 0.5));
}

/* ----------------------------------------------------------------- reading */

static int64_t sum_slot(lv_metrics_shard_t *const *shards, size_t n, unsigned i)
{
	uint64_t v = (uint64_t)slot_load(&fallback, i);
	for (size_t k = 0; k < n; k++)
		if (shards[k])
			v += (uint64_t)slot_load(shards[k], i);
	return (int64_t)v;
}

/* Bucket counts of a histogram series (not cumulative, +Inf last); returns their total. */
static int64_t sum_buckets(lv_metrics_shard_t *const *shards, size_t n, unsigned base,
			   unsigned n_buckets, int64_t *counts)
{
	int64_t total = 0;
	for (unsigned b = 0; b <= n_buckets; b++) {
		counts[b] = sum_slot(shards, n, base + b);
		total += counts[b];
	}
	return total;
}

int64_t lv_metrics_sum(lv_metrics_shard_t *const *shards, size_t n, lv_metric_id_t id,
		       unsigned label)
{
	if ((unsigned)id >= LV_M__COUNT || label >= families[id].n_series)
		return 0;
	const family_t *f = &families[id];
	if (f->type != LV_METRIC_HISTOGRAM && f->type != LV_METRIC_SIZE_HISTOGRAM)
		return sum_slot(shards, n, f->off + label);
	hist_geom_t g = hist_geom(f);
	int64_t counts[LV_MAX((int)LV_METRIC_N_BUCKETS, (int)LV_METRIC_N_SIZE_BUCKETS) + 1];
	return sum_buckets(shards, n, f->off + label * g.slots, g.n_buckets, counts);
}

double lv_metrics_sum_seconds(lv_metrics_shard_t *const *shards, size_t n, lv_metric_id_t id,
			      unsigned label)
{
	if ((unsigned)id >= LV_M__COUNT || label >= families[id].n_series ||
	    families[id].type != LV_METRIC_HISTOGRAM)
		return 0;
	return (double)sum_slot(shards, n, families[id].off + label * HIST_SLOTS + HIST_SUM) / 1e6;
}

const char *lv_metric_name(lv_metric_id_t id)
{
	return (unsigned)id < LV_M__COUNT ? families[id].name : NULL;
}

lv_metric_type_t lv_metric_type(lv_metric_id_t id)
{
	return (unsigned)id < LV_M__COUNT ? families[id].type : LV_METRIC_COUNTER;
}

unsigned lv_metric_n_series(lv_metric_id_t id)
{
	return (unsigned)id < LV_M__COUNT ? families[id].n_series : 0;
}

const char *lv_metric_label_value(lv_metric_id_t id, unsigned label)
{
	if ((unsigned)id >= LV_M__COUNT || label >= families[id].n_labels)
		return NULL;
	return families[id].label_values[label];
}

/* --------------------------------------------------------------- rendering */

static bool is_name(const char *s, bool allow_colon)
{
	if (!s || !*s)
		return false;
	for (const char *p = s; *p; p++) {
		char c = *p;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
			  (allow_colon && c == ':') || (p != s && c >= '0' && c <= '9');
		if (!ok)
			return false;
	}
	return true;
}

/*
 * Appends s with backslash and newline escaped, and double quotes too when
 * in_quotes (label values; HELP text leaves quotes alone).
 */
static bool append_escaped(lv_buf_t *out, const char *s, bool in_quotes)
{
	const char *run = s;
	for (const char *p = s;; p++) {
		const char *esc = NULL;
		if (*p == '\\')
			esc = "\\\\";
		else if (*p == '\n')
			esc = "\\n";
		else if (*p == '"' && in_quotes)
			esc = "\\\"";
		else if (*p != '\0')
			continue;
		if (!lv_buf_append(out, run, (size_t)(p - run)))
			return false;
		if (!esc)
			return true;
		if (!lv_buf_append(out, esc, 2))
			return false;
		run = p + 1;
	}
}

/* Formats v as Prometheus reads it: integers plainly, others round-trip exact. */
static void format_double(char *buf, size_t cap, double v)
{
	if (v != v) {
		snprintf(buf, cap, "NaN");
	} else if (v > 1.7976931348623157e308) {
		snprintf(buf, cap, "+Inf");
	} else if (v < -1.7976931348623157e308) {
		snprintf(buf, cap, "-Inf");
	} else if (v > -9e15 && v < 9e15 && v == (double)(int64_t)v) {
		snprintf(buf, cap, "%" PRId64, (int64_t)v);
	} else {
		snprintf(buf, cap, "%.15g", v);
		if (strtod(buf, NULL) != v)
			snprintf(buf, cap, "%.17g", v);
	}
}

/* Appends `"name" "suffix"` and, if any label is given, `{lname="lvalue",le="le"}`. */
static bool put_series(lv_buf_t *out, const char *name, const char *suffix, const char *lname,
		       const char *lvalue, const char *le)
{
	if (!lv_buf_append_str(out, name) || !lv_buf_append_str(out, suffix))
		return false;
	if (!lname && !le)
		return true;
	if (!lv_buf_append(out, "{", 1))
		return false;
	if (lname) {
		if (!lv_buf_append_str(out, lname) || !lv_buf_append(out, "=\"", 2) ||
		    !append_escaped(out, lvalue, true) || !lv_buf_append(out, "\"", 1))
			return false;
		if (le && !lv_buf_append(out, ",", 1))
			return false;
	}
	if (le) {
		if (!lv_buf_append(out, "le=\"", 4) || !lv_buf_append_str(out, le) ||
		    !lv_buf_append(out, "\"", 1))
			return false;
	}
	return lv_buf_append(out, "}", 1);
}

static bool put_int(lv_buf_t *out, int64_t v)
{
	return lv_buf_printf(out, " %" PRId64 "\n", v);
}

static bool put_double(lv_buf_t *out, double v)
{
	char num[40];
	format_double(num, sizeof(num), v);
	return lv_buf_printf(out, " %s\n", num);
}

static bool render_histogram(lv_buf_t *out, const family_t *f, unsigned label,
			     lv_metrics_shard_t *const *shards, size_t n)
{
	const char *lname = f->label_name;
	const char *lvalue = lname ? f->label_values[label] : NULL;
	hist_geom_t g = hist_geom(f);
	unsigned base = f->off + label * g.slots;
	int64_t counts[LV_MAX((int)LV_METRIC_N_BUCKETS, (int)LV_METRIC_N_SIZE_BUCKETS) + 1];
	int64_t total = sum_buckets(shards, n, base, g.n_buckets, counts);
	int64_t cum = 0;

	for (unsigned b = 0; b <= g.n_buckets; b++) {
		cum += counts[b];
		const char *le = b < g.n_buckets ? g.bound_str[b] : "+Inf";
		if (!put_series(out, f->name, "_bucket", lname, lvalue, le) || !put_int(out, cum))
			return false;
	}
	double sum_s = (double)sum_slot(shards, n, base + g.n_buckets + 1) / g.sum_scale;
	return put_series(out, f->name, "_sum", lname, lvalue, NULL) && put_double(out, sum_s) &&
	       put_series(out, f->name, "_count", lname, lvalue, NULL) && put_int(out, total);
}

bool lv_metrics_render(lv_metrics_shard_t *const *shards, size_t n, lv_buf_t *out)
{
	size_t mark = out->len;

	for (unsigned id = 0; id < LV_M__COUNT; id++) {
		const family_t *f = &families[id];
		if (!lv_metrics_render_family(out, f->name, f->help, type_names[f->type]))
			goto fail;
		for (unsigned i = 0; i < f->n_series; i++) {
			if (f->type == LV_METRIC_HISTOGRAM || f->type == LV_METRIC_SIZE_HISTOGRAM) {
				if (!render_histogram(out, f, i, shards, n))
					goto fail;
				continue;
			}
			const char *lvalue = f->label_name ? f->label_values[i] : NULL;
			if (!put_series(out, f->name, "", f->label_name, lvalue, NULL) ||
			    !put_int(out, sum_slot(shards, n, f->off + i)))
				goto fail;
		}
	}
	return true;
fail:
	out->len = mark;
	return false;
}

bool lv_metrics_render_family(lv_buf_t *out, const char *name, const char *help, const char *type)
{
	static const char *const types[] = {"counter", "gauge", "histogram", "summary", "untyped"};
	size_t mark = out->len;
	bool known = false;

	for (size_t i = 0; type && i < LV_ARRAY_LEN(types); i++)
		known = known || strcmp(type, types[i]) == 0;
	if (!known || !is_name(name, true))
		return false;
	if (help) {
		if (!lv_buf_printf(out, "# HELP %s ", name) || !append_escaped(out, help, false) ||
		    !lv_buf_append(out, "\n", 1))
			goto fail;
	}
	if (!lv_buf_printf(out, "# TYPE %s %s\n", name, type))
		goto fail;
	return true;
fail:
	out->len = mark;
	return false;
}

bool lv_metrics_render_sample(lv_buf_t *out, const char *name, const char *const labels_kv[],
			      double v)
{
	size_t mark = out->len;

	if (!is_name(name, true))
		return false;
	if (!lv_buf_append_str(out, name))
		goto fail;
	if (labels_kv && labels_kv[0]) {
		for (size_t i = 0; labels_kv[i]; i += 2) {
			if (!is_name(labels_kv[i], false) || !labels_kv[i + 1])
				goto fail;
			if (!lv_buf_append(out, i == 0 ? "{" : ",", 1) ||
			    !lv_buf_append_str(out, labels_kv[i]) ||
			    !lv_buf_append(out, "=\"", 2) ||
			    !append_escaped(out, labels_kv[i + 1], true) ||
			    !lv_buf_append(out, "\"", 1))
				goto fail;
		}
		if (!lv_buf_append(out, "}", 1))
			goto fail;
	}
	if (!put_double(out, v))
		goto fail;
	return true;
fail:
	out->len = mark;
	return false;
}
