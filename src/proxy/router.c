/* SPDX-License-Identifier: ISC */
/* Routing decisions; see router.h. Pure: no state, no I/O. */
#include "proxy/router.h"

static const char *const reason_names[] = {
#define XX(name, text) text,
	LV_ROUTE_REASON_MAP(XX)
#undef XX
};

const char *lv_route_reason_name(lv_route_reason_t r)
{
	return (unsigned)r < LV_ROUTE__NREASONS ? reason_names[r] : "unknown";
}

static lv_route_t route(lv_route_target_t t, lv_route_reason_t r)
{
	lv_route_t d = {t, r};
	return d;
}

/* A read that may go to a replica: where it actually goes. */
static lv_route_t read_route(const lv_route_input_t *in, lv_route_reason_t why)
{
	if (in->n_healthy_replicas <= 0)
		return route(in->fallback_error ? LV_TARGET_ERROR : LV_TARGET_PRIMARY, LV_ROUTE_NO_REPLICA);
	return route(LV_TARGET_REPLICA, why);
}

lv_route_t lv_route_decide(const lv_route_input_t *in)
{
	const lv_sql_info_t *info = in->info;
	if (!info)
		return route(LV_TARGET_PRIMARY, LV_ROUTE_UNKNOWN);
	if (info->hints.want_primary)
		return route(LV_TARGET_PRIMARY, LV_ROUTE_HINT_PRIMARY);
	if (info->kind == LV_SQL_UNPARSABLE)
		return route(LV_TARGET_PRIMARY, LV_ROUTE_UNPARSABLE);
	if (info->hints.want_replica && in->n_healthy_replicas > 0)
		return route(LV_TARGET_REPLICA, LV_ROUTE_HINT_REPLICA);
	/* A transaction block: its first statement decides for all of it. */
	if (info->kind == LV_SQL_BEGIN || info->kind == LV_SQL_START) {
		if (!info->txn_read_only)
			return route(LV_TARGET_PRIMARY, LV_ROUTE_TXN);
		if (in->ryw_pending)
			return route(LV_TARGET_PRIMARY, LV_ROUTE_READ_YOUR_WRITES);
		return read_route(in, LV_ROUTE_TXN_READ_ONLY);
	}
	if (info->is_transaction_control)
		return route(LV_TARGET_PRIMARY, LV_ROUTE_TXN);
	if (!info->is_read_only || info->kind == LV_SQL_EMPTY)
		return route(LV_TARGET_PRIMARY, info->kind == LV_SQL_EMPTY ? LV_ROUTE_UNKNOWN : LV_ROUTE_WRITE);
	if (in->ryw_pending)
		return route(LV_TARGET_PRIMARY, LV_ROUTE_READ_YOUR_WRITES);
	return read_route(in, LV_ROUTE_READ);
}

int lv_route_pick_replica(const lv_replica_load_t *r, int n, int start)
{
	int best = -1;
	for (int k = 0; k < n; k++) {
		int i = (start + k) % n;
		if (!r[i].healthy || r[i].weight <= 0)
			continue;
		/* Compare outstanding/weight without division: a/wa < b/wb <=> a*wb < b*wa. */
		if (best < 0 || (int64_t)r[i].outstanding * r[best].weight < (int64_t)r[best].outstanding * r[i].weight)
			best = i;
	}
	return best;
}
