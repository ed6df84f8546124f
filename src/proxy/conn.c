/* SPDX-License-Identifier: ISC */
/*
 * The log prefix of connections: "C-12 app/alice@127.0.0.1:51234" for clients,
 * "S-7 app/alice@127.0.0.1:5432" for servers, plus what the connection is
 * doing. Installed once into core/log.c, which knows nothing of connections.
 */
#include "proxy/conn.h"
#include "core/log.h"
#include "proxy/client.h"
#include "proxy/pool.h"
#include "proxy/server.h"

static size_t conn_prefix(const void *obj, char *buf, size_t len, const char **action)
{
	const lv_conn_t *conn = obj;
	const char *db = "", *user = "";
	if (conn->kind == LV_CONN_CLIENT) {
		const lv_client_t *c = (const lv_client_t *)conn;
		db = c->database;
		user = c->user;
	} else {
		const lv_server_t *sv = (const lv_server_t *)conn;
		db = sv->pool->db_name;
		user = sv->pool->user;
	}
	*action = conn->action;
	int n = snprintf(buf, len, "%c-%llu %s/%s@%s:%d", conn->kind == LV_CONN_CLIENT ? 'C' : 'S',
			 (unsigned long long)conn->id, db, user, conn->addr, conn->port);
	if (n < 0)
		return 0;
	return (size_t)n < len ? (size_t)n : len - 1;
}

void lv_conn_log_init(void)
{
	lv_log_set_prefix_fn(conn_prefix);
}
