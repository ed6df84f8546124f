/* SPDX-License-Identifier: ISC */
/*
 * Forward typedefs for objects that point at each other across modules
 * (client <-> server, pool <-> server, worker <-> everything). Including this
 * breaks header cycles without pulling in the definitions.
 */
#ifndef LEVEE_CORE_TYPES_H
#define LEVEE_CORE_TYPES_H

typedef struct lv_conn lv_conn_t;
typedef struct lv_client lv_client_t;
typedef struct lv_server lv_server_t;
typedef struct lv_pool lv_pool_t;
typedef struct lv_pool_shared lv_pool_shared_t;
typedef struct lv_worker lv_worker_t;
typedef struct lv_proxy lv_proxy_t;

#endif
