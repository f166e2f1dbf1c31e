/*
 * Decoding of the logical replication stream: the CopyBoth framing of the
 * streaming replication protocol and the messages of the built-in pgoutput
 * plugin (protocol versions 1 to 3, PostgreSQL 15 "Logical Replication
 * Message Formats"). Pure functions over a bounded byte buffer: no I/O, no
 * libpq, so every message type is unit-tested from byte arrays.
 *
 * All integers are big-endian. String = NUL-terminated bytes.
 *
 * CopyData from the server:
 *   'w' XLogData   Int64 dataStart, Int64 walEnd, Int64 sendTime, Byte[] data
 *   'k' Keepalive  Int64 walEnd, Int64 sendTime, Byte1 replyRequested
 * CopyData to the server:
 *   'r' Standby status update  Int64 written, Int64 flushed, Int64 applied,
 *                              Int64 sendTime, Byte1 replyRequested
 * sendTime is microseconds since 2000-01-01 00:00:00 UTC.
 *
 * pgoutput messages (the XLogData payload). "[Int32 xid]" is present only
 * between Stream Start and Stream Stop (protocol version 2+):
 *   'B' Begin            Int64 final LSN, Int64 commit ts, Int32 xid
 *   'C' Commit           Int8 flags(0), Int64 commit LSN, Int64 end LSN,
 *                        Int64 commit ts
 *   'O' Origin           Int64 origin commit LSN, String name
 *   'R' Relation         [Int32 xid] Int32 relid, String namespace,
 *                        String relname, Int8 replica identity,
 *                        Int16 ncols, ncols x (Int8 flags (1 = key),
 *                        String name, Int32 type OID, Int32 typmod)
 *   'Y' Type             [Int32 xid] Int32 type OID, String namespace,
 *                        String name
 *   'I' Insert           [Int32 xid] Int32 relid, 'N', TupleData
 *   'U' Update           [Int32 xid] Int32 relid, optional ('K' | 'O',
 *                        TupleData), 'N', TupleData
 *   'D' Delete           [Int32 xid] Int32 relid, 'K' | 'O', TupleData
 *   'T' Truncate         [Int32 xid] Int32 nrels, Int8 options
 *                        (1 cascade, 2 restart identity), nrels x Int32 relid
 *   'M' Message          [Int32 xid] Int8 flags (1 transactional), Int64 LSN,
 *                        String prefix, Int32 len, Byte[len] content
 *   'S' Stream Start     Int32 xid, Int8 first segment (0/1)
 *   'E' Stream Stop      (empty)
 *   'c' Stream Commit    Int32 xid, Int8 flags(0), Int64 commit LSN,
 *                        Int64 end LSN, Int64 commit ts
 *   'A' Stream Abort     Int32 xid, Int32 subxid
 *   'b' Begin Prepare    Int64 prepare LSN, Int64 end LSN, Int64 prepare ts,
 *                        Int32 xid, String gid
 *   'P' Prepare          Int8 flags(0), Int64 prepare LSN, Int64 end LSN,
 *                        Int64 prepare ts, Int32 xid, String gid
 *   'K' Commit Prepared  Int8 flags(0), Int64 commit LSN, Int64 end LSN,
 *                        Int64 commit ts, Int32 xid, String gid
 *   'r' Rollback Prepared Int8 flags(0), Int64 prepare end LSN,
 *                        Int64 rollback end LSN, Int64 prepare ts,
 *                        Int64 rollback ts, Int32 xid, String gid
 *   'p' Stream Prepare   Int8 flags(0), Int64 prepare LSN, Int64 end LSN,
 *                        Int64 prepare ts, Int32 xid, String gid
 * TupleData: Int16 ncols, ncols x (Byte1 kind: 'n' null | 'u' unchanged
 *            TOASTed value | 't' Int32 len, Byte[len] text | 'b' Int32 len,
 *            Byte[len] binary)
 */
#ifndef CDC_PGOUTPUT_H
#define CDC_PGOUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- CopyData framing ---- */

typedef struct pgo_copydata {
    char kind;          /* 'w' or 'k' */
    uint64_t wal_start; /* 'w' only */
    uint64_t wal_end;
    int64_t send_time;
    bool reply_requested;   /* 'k' only */
    const uint8_t *payload; /* 'w' only: points into the input buffer */
    size_t payload_len;
} pgo_copydata;

/* Returns 0, or -1 with errstr for unknown kinds and truncated input. */
int pgo_parse_copydata(const uint8_t *buf, size_t len, pgo_copydata *out, char *errstr,
                       size_t errstr_size);

#define PGO_STATUS_LEN 34
/* Writes a standby status update into out; returns its length (34). */
size_t pgo_build_status(uint8_t out[PGO_STATUS_LEN], uint64_t written, uint64_t flushed,
                        uint64_t applied, int64_t send_time, bool reply_requested);

/* Current time in the protocol's unit: microseconds since 2000-01-01 UTC. */
int64_t pgo_now(void);
/* Convert a protocol timestamp to milliseconds since the Unix epoch. */
static inline int64_t pgo_time_to_unix_ms(int64_t pg_us)
{
    return (pg_us + INT64_C(946684800000000)) / 1000;
}

/* ---- pgoutput messages ---- */

typedef struct pgo_value {
    char kind;        /* 'n' null, 'u' unchanged TOAST, 't' text, 'b' binary */
    const char *data; /* 't'/'b': points into the input buffer, not NUL-terminated */
    uint32_t len;
} pgo_value;

typedef struct pgo_tuple {
    uint16_t ncols;
    pgo_value *values; /* owned by the parser, valid until the next parse */
} pgo_tuple;

typedef struct pgo_relcol {
    uint8_t flags; /* 1 = part of the replica identity key */
    const char *name;
    uint32_t type_oid;
    int32_t typmod;
} pgo_relcol;

/*
 * One decoded message. Only the fields of the message's type are set; string
 * and data pointers point into the input buffer and arrays into the parser's
 * storage: both stay valid until the next pgo_parse call or until the input
 * buffer is freed, whichever comes first.
 */
typedef struct pgo_msg {
    char type;           /* message byte, e.g. 'B', 'I' */
    bool streamed;       /* message carried a stream xid prefix */
    uint32_t xid;        /* B, S, c, A, b, P, K, r, p and streamed messages */
    uint32_t subxid;     /* A */
    uint8_t flags;       /* C, c, M (1 = transactional), P, K, r, p; S first-segment; T options */
    uint64_t lsn;        /* B final LSN, C/c/K commit LSN, O origin LSN, M LSN,
                            b/P/p prepare LSN, r prepare end LSN */
    uint64_t end_lsn;    /* C/c/K/b/P/p end LSN, r rollback end LSN */
    int64_t ts;          /* B/C/c/K commit ts, b/P/p prepare ts, r prepare ts */
    int64_t ts2;         /* r rollback ts */
    const char *name;    /* O origin name, M prefix, b/P/K/r/p gid */
    uint32_t relid;      /* R, I, U, D */
    const char *nspname; /* R, Y ("" means pg_catalog) */
    const char *relname; /* R relation name, Y type name */
    char replident;      /* R: 'd' default, 'n' nothing, 'f' full, 'i' index */
    uint16_t ncols;      /* R */
    pgo_relcol *cols;    /* R */
    uint32_t typoid;     /* Y */
    char old_kind;       /* U/D: 'K' key only, 'O' full old row, 0 none */
    pgo_tuple old_tuple; /* U (if old_kind), D */
    pgo_tuple new_tuple; /* I, U */
    uint32_t nrelids;    /* T */
    uint32_t *relids;    /* T */
    const uint8_t *content; /* M */
    uint32_t content_len;   /* M */
} pgo_msg;

typedef struct pgo_parser pgo_parser;

/* The parser owns reusable arrays and the "inside a stream block" state. */
pgo_parser *pgo_parser_new(void);
void pgo_parser_destroy(pgo_parser *p);
/* Forget stream state (use after reconnecting). */
void pgo_parser_reset(pgo_parser *p);

/*
 * Decode one pgoutput message from buf[0..len). Returns 0, or -1 with errstr
 * describing the problem (unknown type, truncated message, bad tuple kind,
 * trailing bytes) and `out` undefined. Never reads outside buf.
 */
int pgo_parse(pgo_parser *p, const uint8_t *buf, size_t len, pgo_msg *out, char *errstr,
              size_t errstr_size);

#endif
