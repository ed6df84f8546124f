/* SPDX-License-Identifier: ISC */
/*
 * The SQLSTATE codes Levee itself puts in ErrorResponse and NoticeResponse
 * messages (PostgreSQL's errcodes.txt names, LV_SQLSTATE_ prefixed). Every
 * error a client sees carries one of these; add a code here before using it.
 */
#ifndef LEVEE_WIRE_SQLSTATE_H
#define LEVEE_WIRE_SQLSTATE_H

/* Class 08: connection exception. */
#define LV_SQLSTATE_CONNECTION_EXCEPTION "08000"
#define LV_SQLSTATE_CONNECTION_FAILURE "08006"
#define LV_SQLSTATE_PROTOCOL_VIOLATION "08P01"

/* Class 0A: feature not supported. */
#define LV_SQLSTATE_FEATURE_NOT_SUPPORTED "0A000"

/* Class 25: invalid transaction state. */
#define LV_SQLSTATE_IDLE_IN_TXN_TIMEOUT "25P03"

/* Class 28: invalid authorization specification. */
#define LV_SQLSTATE_INVALID_AUTHORIZATION "28000"
#define LV_SQLSTATE_INVALID_PASSWORD "28P01"

/* Class 3D: invalid catalog name (unknown database). */
#define LV_SQLSTATE_INVALID_CATALOG_NAME "3D000"

/* Class 42: syntax error or access rule violation. */
#define LV_SQLSTATE_INSUFFICIENT_PRIVILEGE "42501"
#define LV_SQLSTATE_SYNTAX_ERROR "42601"

/* Class 53: insufficient resources. */
#define LV_SQLSTATE_OUT_OF_MEMORY "53200"
#define LV_SQLSTATE_TOO_MANY_CONNECTIONS "53300"
#define LV_SQLSTATE_CONFIGURATION_LIMIT_EXCEEDED "53400"

/* Class 54: program limit exceeded. */
#define LV_SQLSTATE_PROGRAM_LIMIT "54000"

/* Class 55: object not in prerequisite state. */
#define LV_SQLSTATE_OBJECT_NOT_IN_STATE "55000"

/* Class 57: operator intervention. */
#define LV_SQLSTATE_QUERY_CANCELED "57014"
#define LV_SQLSTATE_ADMIN_SHUTDOWN "57P01"
#define LV_SQLSTATE_CANNOT_CONNECT_NOW "57P03"
#define LV_SQLSTATE_IDLE_SESSION_TIMEOUT "57P05"

/* Class F0: configuration file error. */
#define LV_SQLSTATE_CONFIG_FILE_ERROR "F0000"

/* Class XX: internal error. */
#define LV_SQLSTATE_INTERNAL_ERROR "XX000"

#endif
