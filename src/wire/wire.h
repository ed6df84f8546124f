/* SPDX-License-Identifier: ISC */
/*
 * PostgreSQL v3 wire-protocol constants: message type bytes with PostgreSQL's
 * own names (src/include/libpq/protocol.h upstream), authentication request
 * codes, the special startup-packet codes and the limits Levee enforces.
 *
 * Every regular message is one type byte, then an int32 length that counts
 * itself and the body but not the type byte, then the body. Startup-phase
 * packets (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest) have no
 * type byte: int32 length (counting itself), int32 code, body.
 *
 * Parsers live in wire/read.h, builders in wire/write.h, SCRAM and MD5 in
 * wire/scram.h, SQLSTATE strings in wire/sqlstate.h. Nothing in wire/ does
 * I/O or keeps global state.
 */
#ifndef LEVEE_WIRE_WIRE_H
#define LEVEE_WIRE_WIRE_H

#include "core/lv.h"

/* Frontend (client to server) message types. */
#define PqMsg_Query 'Q'
#define PqMsg_Parse 'P'
#define PqMsg_Bind 'B'
#define PqMsg_Execute 'E'
#define PqMsg_Describe 'D'
#define PqMsg_Close 'C'
#define PqMsg_Sync 'S'
#define PqMsg_Flush 'H'
#define PqMsg_Terminate 'X'
#define PqMsg_FunctionCall 'F'
#define PqMsg_PasswordMessage 'p'     /* also GSSResponse */
#define PqMsg_SASLInitialResponse 'p' /* same byte; meaning depends on the auth state */
#define PqMsg_SASLResponse 'p'        /* same byte; meaning depends on the auth state */

/* Messages sent in both directions. */
#define PqMsg_CopyData 'd'
#define PqMsg_CopyDone 'c'
#define PqMsg_CopyFail 'f' /* frontend only, listed here with its siblings */

/* Backend (server to client) message types. */
#define PqMsg_AuthenticationRequest 'R'
#define PqMsg_BackendKeyData 'K'
#define PqMsg_ParameterStatus 'S'
#define PqMsg_ReadyForQuery 'Z'
#define PqMsg_ErrorResponse 'E'
#define PqMsg_NoticeResponse 'N'
#define PqMsg_RowDescription 'T'
#define PqMsg_DataRow 'D'
#define PqMsg_CommandComplete 'C'
#define PqMsg_EmptyQueryResponse 'I'
#define PqMsg_ParseComplete '1'
#define PqMsg_BindComplete '2'
#define PqMsg_CloseComplete '3'
#define PqMsg_NoData 'n'
#define PqMsg_PortalSuspended 's'
#define PqMsg_ParameterDescription 't'
#define PqMsg_NotificationResponse 'A'
#define PqMsg_CopyInResponse 'G'
#define PqMsg_CopyOutResponse 'H'
#define PqMsg_CopyBothResponse 'W'
#define PqMsg_FunctionCallResponse 'V'
#define PqMsg_NegotiateProtocolVersion 'v'

/* Describe and Close target kinds. */
#define LV_WIRE_TARGET_STATEMENT 'S'
#define LV_WIRE_TARGET_PORTAL 'P'

/* ReadyForQuery transaction status bytes. */
#define LV_WIRE_TXN_IDLE 'I'    /* not in a transaction block */
#define LV_WIRE_TXN_INTRANS 'T' /* in a transaction block */
#define LV_WIRE_TXN_FAILED 'E'  /* in a failed transaction block */

/* AuthenticationRequest codes (the int32 after the 'R' header). */
#define LV_AUTH_REQ_OK 0
#define LV_AUTH_REQ_KRB4 1 /* not supported by PostgreSQL either */
#define LV_AUTH_REQ_KRB5 2 /* not supported by PostgreSQL either */
#define LV_AUTH_REQ_PASSWORD 3
#define LV_AUTH_REQ_CRYPT 4 /* not supported by PostgreSQL either */
#define LV_AUTH_REQ_MD5 5
#define LV_AUTH_REQ_GSS 7
#define LV_AUTH_REQ_GSS_CONT 8
#define LV_AUTH_REQ_SSPI 9
#define LV_AUTH_REQ_SASL 10
#define LV_AUTH_REQ_SASL_CONT 11
#define LV_AUTH_REQ_SASL_FIN 12

/* Protocol versions and the special startup codes (major << 16 | minor). */
#define LV_PG_PROTOCOL(major, minor) (((uint32_t)(major) << 16) | (uint32_t)(minor))
#define LV_PG_PROTOCOL_MAJOR(v) ((uint32_t)(v) >> 16)
#define LV_PG_PROTOCOL_MINOR(v) ((uint32_t)(v)&0xffff)
#define LV_PG_PROTOCOL_3_0 LV_PG_PROTOCOL(3, 0)           /* 196608 */
#define LV_CANCEL_REQUEST_CODE LV_PG_PROTOCOL(1234, 5678) /* 80877102 */
#define LV_NEGOTIATE_SSL_CODE LV_PG_PROTOCOL(1234, 5679)  /* 80877103 */
#define LV_NEGOTIATE_GSS_CODE LV_PG_PROTOCOL(1234, 5680)  /* 80877104 */

/* Sizes. */
#define LV_WIRE_HEADER_LEN 5           /* type byte + int32 length */
#define LV_WIRE_MAX_STARTUP_LEN 10000  /* PostgreSQL's MAX_STARTUP_PACKET_LENGTH */
#define LV_WIRE_CANCEL_LEN 16          /* length + code + pid + key */
#define LV_WIRE_SSL_REQUEST_LEN 8      /* length + code (also GSSENCRequest) */
#define LV_WIRE_MAX_MSG_LEN 0x3fffffff /* PostgreSQL's MaxAllocSize: no message is larger */

#endif
