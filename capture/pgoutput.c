/*
 * Decoder for the CopyBoth framing of the streaming replication protocol and
 * for the pgoutput logical replication messages it carries (see pgoutput.h for
 * the byte layouts). Every read goes through a bounded cursor, so a message
 * that is short, oversized or malformed is reported as an error instead of
 * being read past its end. The decoder is strict on purpose: a byte it does
 * not understand means we and the server disagree about the protocol, and
 * guessing would publish wrong data downstream.
 */
#include "pgoutput.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cdc/buf.h"

/* Seconds from the Unix epoch to the PostgreSQL epoch (2000-01-01 UTC). */
#define PG_EPOCH_OFFSET_S INT64_C(946684800)

struct pgo_parser {
    bool in_stream; /* between Stream Start and Stream Stop */
    pgo_relcol *cols;
    size_t cols_cap;
    pgo_value *oldvals;
    size_t oldvals_cap;
    pgo_value *newvals;
    size_t newvals_cap;
    uint32_t *relids;
    size_t relids_cap;
};

/* ---- bounded big-endian cursor ---- */

/*
 * A read position inside one message. On a failed read the cursor writes the
 * error text itself, naming the message and the field, so callers only
 * propagate -1.
 */
typedef struct cursor {
    const uint8_t *p;
    size_t left;
    const char *what; /* message name for error text */
    char *errstr;
    size_t errstr_size;
} cursor;

__attribute__((format(printf, 3, 4))) static int fail(char *errstr, size_t errstr_size,
                                                      const char *fmt, ...)
{
    if (errstr && errstr_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
    }
    return -1;
}

__attribute__((format(printf, 2, 3))) static bool cur_fail(cursor *c, const char *fmt, ...)
{
    char detail[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    fail(c->errstr, c->errstr_size, "%s: %s", c->what, detail);
    return false;
}

static bool cur_need(cursor *c, size_t n, const char *field)
{
    if (c->left >= n)
        return true;
    return cur_fail(c, "truncated reading %s (need %zu bytes, %zu left)", field, n, c->left);
}

static bool cur_u8(cursor *c, uint8_t *v, const char *field)
{
    if (!cur_need(c, 1, field))
        return false;
    *v = c->p[0];
    c->p += 1;
    c->left -= 1;
    return true;
}

static bool cur_u16(cursor *c, uint16_t *v, const char *field)
{
    if (!cur_need(c, 2, field))
        return false;
    *v = (uint16_t)((uint16_t)c->p[0] << 8 | c->p[1]);
    c->p += 2;
    c->left -= 2;
    return true;
}

static bool cur_u32(cursor *c, uint32_t *v, const char *field)
{
    if (!cur_need(c, 4, field))
        return false;
    *v = (uint32_t)c->p[0] << 24 | (uint32_t)c->p[1] << 16 | (uint32_t)c->p[2] << 8 |
         (uint32_t)c->p[3];
    c->p += 4;
    c->left -= 4;
    return true;
}

static bool cur_u64(cursor *c, uint64_t *v, const char *field)
{
    if (!cur_need(c, 8, field))
        return false;
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x = x << 8 | c->p[i];
    *v = x;
    c->p += 8;
    c->left -= 8;
    return true;
}

static bool cur_i64(cursor *c, int64_t *v, const char *field)
{
    uint64_t u;
    if (!cur_u64(c, &u, field))
        return false;
    /* Two's complement reinterpretation without implementation-defined casts. */
    memcpy(v, &u, sizeof *v);
    return true;
}

/* Int32 length that must be non-negative and fit in what is left. */
static bool cur_len(cursor *c, uint32_t *v, const char *field)
{
    if (!cur_u32(c, v, field))
        return false;
    if (*v > INT32_MAX)
        return cur_fail(c, "negative %s %" PRId64, field, (int64_t)*v - (INT64_C(1) << 32));
    if (*v > c->left)
        return cur_fail(c, "%s %" PRIu32 " exceeds the %zu bytes left", field, *v, c->left);
    return true;
}

static bool cur_bytes(cursor *c, size_t n, const uint8_t **v, const char *field)
{
    if (!cur_need(c, n, field))
        return false;
    *v = c->p;
    c->p += n;
    c->left -= n;
    return true;
}

/* A NUL-terminated string; the NUL must lie inside the buffer. */
static bool cur_str(cursor *c, const char **v, const char *field)
{
    const uint8_t *nul = c->left ? memchr(c->p, '\0', c->left) : NULL;
    if (!nul)
        return cur_fail(c, "unterminated string in %s", field);
    size_t n = (size_t)(nul - c->p) + 1;
    *v = (const char *)c->p;
    c->p += n;
    c->left -= n;
    return true;
}

static bool cur_end(cursor *c)
{
    if (c->left == 0)
        return true;
    return cur_fail(c, "%zu trailing bytes after the message", c->left);
}

static bool zero_flags(cursor *c, uint8_t *flags)
{
    if (!cur_u8(c, flags, "flags"))
        return false;
    if (*flags != 0)
        return cur_fail(c, "unknown flags 0x%02x", *flags);
    return true;
}

/* ---- CopyData framing ---- */

/*
 * 'w' XLogData   Int64 dataStart, Int64 walEnd, Int64 sendTime, Byte[] data
 * 'k' Keepalive  Int64 walEnd, Int64 sendTime, Byte1 replyRequested
 */
int pgo_parse_copydata(const uint8_t *buf, size_t len, pgo_copydata *out, char *errstr,
                       size_t errstr_size)
{
    memset(out, 0, sizeof *out);
    if (len == 0)
        return fail(errstr, errstr_size, "empty CopyData message");
    cursor c = {buf + 1, len - 1, NULL, errstr, errstr_size};
    out->kind = (char)buf[0];
    switch (buf[0]) {
    case 'w':
        c.what = "XLogData";
        if (!cur_u64(&c, &out->wal_start, "dataStart") || !cur_u64(&c, &out->wal_end, "walEnd") ||
            !cur_i64(&c, &out->send_time, "sendTime"))
            return -1;
        out->payload = c.p;
        out->payload_len = c.left;
        return 0;
    case 'k': {
        uint8_t reply;
        c.what = "primary keepalive";
        if (!cur_u64(&c, &out->wal_end, "walEnd") || !cur_i64(&c, &out->send_time, "sendTime") ||
            !cur_u8(&c, &reply, "replyRequested") || !cur_end(&c))
            return -1;
        if (reply > 1)
            return fail(errstr, errstr_size, "primary keepalive: replyRequested is %u, not 0 or 1",
                        reply);
        out->reply_requested = reply == 1;
        return 0;
    }
    default:
        return fail(errstr, errstr_size, "unknown CopyData message type 0x%02x", buf[0]);
    }
}

static uint8_t *put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        *p++ = (uint8_t)(v >> (i * 8));
    }
    return p;
}

/*
 * 'r' Standby status update  Int64 written, Int64 flushed, Int64 applied,
 *                            Int64 sendTime, Byte1 replyRequested
 */
size_t pgo_build_status(uint8_t out[PGO_STATUS_LEN], uint64_t written, uint64_t flushed,
                        uint64_t applied, int64_t send_time, bool reply_requested)
{
    uint64_t ts;
    memcpy(&ts, &send_time, sizeof ts);
    uint8_t *p = out;
    *p++ = 'r';
    p = put_u64(p, written);
    p = put_u64(p, flushed);
    p = put_u64(p, applied);
    p = put_u64(p, ts);
    *p++ = reply_requested ? 1 : 0;
    return (size_t)(p - out);
}

int64_t pgo_now(void)
{
    struct timespec ts;
    /* CLOCK_REALTIME cannot fail with a valid clock id and pointer. */
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((int64_t)ts.tv_sec - PG_EPOCH_OFFSET_S) * INT64_C(1000000) + (int64_t)ts.tv_nsec / 1000;
}

/* ---- parser state ---- */

pgo_parser *pgo_parser_new(void)
{
    return cdc_xcalloc(1, sizeof(pgo_parser));
}

void pgo_parser_destroy(pgo_parser *p)
{
    if (!p)
        return;
    free(p->cols);
    free(p->oldvals);
    free(p->newvals);
    free(p->relids);
    free(p);
}

void pgo_parser_reset(pgo_parser *p)
{
    p->in_stream = false;
}

/* Ensure *arr holds at least n elements of size elsize; keeps the storage. */
static void *grow(void *arr, size_t *cap, size_t n, size_t elsize)
{
    if (n <= *cap)
        return arr;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < n)
        ncap *= 2; /* n is at most 2^32 / 4 elements, bounded by the input */
    arr = cdc_xrealloc(arr, ncap * elsize);
    *cap = ncap;
    return arr;
}

/* ---- pgoutput messages ---- */

/*
 * TupleData: Int16 ncols, ncols x (Byte1 kind: 'n' null | 'u' unchanged
 *            TOASTed value | 't' Int32 len, Byte[len] text | 'b' Int32 len,
 *            Byte[len] binary)
 */
static bool read_tuple(cursor *c, pgo_tuple *t, pgo_value **vals, size_t *cap)
{
    if (!cur_u16(c, &t->ncols, "tuple column count"))
        return false;
    /* Every column takes at least its kind byte: refuse before allocating. */
    if (t->ncols > c->left)
        return cur_fail(c, "tuple of %u columns does not fit in %zu bytes", t->ncols, c->left);
    *vals = grow(*vals, cap, t->ncols, sizeof **vals);
    t->values = *vals;
    for (uint16_t i = 0; i < t->ncols; i++) {
        pgo_value *v = &t->values[i];
        uint8_t kind;
        const uint8_t *data;
        memset(v, 0, sizeof *v);
        if (!cur_u8(c, &kind, "tuple value kind"))
            return false;
        v->kind = (char)kind;
        switch (kind) {
        case 'n':
        case 'u':
            break;
        case 't':
        case 'b':
            if (!cur_len(c, &v->len, "tuple value length") ||
                !cur_bytes(c, v->len, &data, "tuple value"))
                return false;
            v->data = (const char *)data;
            break;
        default:
            return cur_fail(c, "unknown tuple value kind 0x%02x in column %u", kind, i);
        }
    }
    return true;
}

/*
 * 'R' Relation  [Int32 xid] Int32 relid, String namespace, String relname,
 *               Int8 replica identity, Int16 ncols, ncols x (Int8 flags
 *               (1 = key), String name, Int32 type OID, Int32 typmod)
 */
static bool read_relation(pgo_parser *p, cursor *c, pgo_msg *m)
{
    uint8_t ident;
    if (!cur_u32(c, &m->relid, "relid") || !cur_str(c, &m->nspname, "namespace") ||
        !cur_str(c, &m->relname, "relation name") || !cur_u8(c, &ident, "replica identity") ||
        !cur_u16(c, &m->ncols, "column count"))
        return false;
    if (ident != 'd' && ident != 'n' && ident != 'f' && ident != 'i')
        return cur_fail(c, "unknown replica identity 0x%02x", ident);
    m->replident = (char)ident;
    /* flags + empty name + OID + typmod = 10 bytes at least per column */
    if (m->ncols > c->left / 10)
        return cur_fail(c, "%u columns do not fit in %zu bytes", m->ncols, c->left);
    p->cols = grow(p->cols, &p->cols_cap, m->ncols, sizeof *p->cols);
    m->cols = p->cols;
    for (uint16_t i = 0; i < m->ncols; i++) {
        pgo_relcol *col = &m->cols[i];
        uint32_t typmod;
        if (!cur_u8(c, &col->flags, "column flags") || !cur_str(c, &col->name, "column name") ||
            !cur_u32(c, &col->type_oid, "column type OID") || !cur_u32(c, &typmod, "column typmod"))
            return false;
        if (col->flags & ~1u)
            return cur_fail(c, "unknown flags 0x%02x on column %u", col->flags, i);
        memcpy(&col->typmod, &typmod, sizeof col->typmod);
    }
    return true;
}

/* 'U' Update  [Int32 xid] Int32 relid, optional ('K' | 'O', TupleData),
 *             'N', TupleData */
static bool read_update(pgo_parser *p, cursor *c, pgo_msg *m)
{
    uint8_t sub;
    if (!cur_u32(c, &m->relid, "relid") || !cur_u8(c, &sub, "tuple marker"))
        return false;
    if (sub == 'K' || sub == 'O') {
        m->old_kind = (char)sub;
        if (!read_tuple(c, &m->old_tuple, &p->oldvals, &p->oldvals_cap) ||
            !cur_u8(c, &sub, "new tuple marker"))
            return false;
        if (sub != 'N')
            return cur_fail(c, "expected 'N' after the old tuple, got 0x%02x", sub);
    } else if (sub != 'N') {
        return cur_fail(c, "expected 'K', 'O' or 'N' after relid, got 0x%02x", sub);
    }
    return read_tuple(c, &m->new_tuple, &p->newvals, &p->newvals_cap);
}

/* 'T' Truncate  [Int32 xid] Int32 nrels, Int8 options (1 cascade, 2 restart
 *               identity), nrels x Int32 relid */
static bool read_truncate(pgo_parser *p, cursor *c, pgo_msg *m)
{
    if (!cur_u32(c, &m->nrelids, "relation count") || !cur_u8(c, &m->flags, "options"))
        return false;
    if (m->nrelids > INT32_MAX)
        return cur_fail(c, "negative relation count");
    if (m->flags & ~3u)
        return cur_fail(c, "unknown options 0x%02x", m->flags);
    if (m->nrelids > c->left / 4)
        return cur_fail(c, "%" PRIu32 " relids do not fit in %zu bytes", m->nrelids, c->left);
    p->relids = grow(p->relids, &p->relids_cap, m->nrelids, sizeof *p->relids);
    m->relids = p->relids;
    for (uint32_t i = 0; i < m->nrelids; i++)
        if (!cur_u32(c, &m->relids[i], "relid"))
            return false;
    return true;
}

/* 'M' Message  [Int32 xid] Int8 flags (1 transactional), Int64 LSN,
 *              String prefix, Int32 len, Byte[len] content */
static bool read_message(cursor *c, pgo_msg *m)
{
    if (!cur_u8(c, &m->flags, "flags") || !cur_u64(c, &m->lsn, "LSN") ||
        !cur_str(c, &m->name, "prefix") || !cur_len(c, &m->content_len, "content length") ||
        !cur_bytes(c, m->content_len, &m->content, "content"))
        return false;
    if (m->flags & ~1u)
        return cur_fail(c, "unknown flags 0x%02x", m->flags);
    return true;
}

/*
 * 'b' Begin Prepare  Int64 prepare LSN, Int64 end LSN, Int64 prepare ts,
 *                    Int32 xid, String gid
 * 'P' Prepare, 'K' Commit Prepared, 'p' Stream Prepare: Int8 flags(0) first,
 *                    then the same fields.
 */
static bool read_prepare_like(cursor *c, pgo_msg *m, bool has_flags)
{
    if (has_flags && !zero_flags(c, &m->flags))
        return false;
    return cur_u64(c, &m->lsn, "LSN") && cur_u64(c, &m->end_lsn, "end LSN") &&
           cur_i64(c, &m->ts, "timestamp") && cur_u32(c, &m->xid, "xid") &&
           cur_str(c, &m->name, "gid");
}

static const char *msg_name(uint8_t type)
{
    switch (type) {
    case 'B':
        return "pgoutput Begin";
    case 'C':
        return "pgoutput Commit";
    case 'O':
        return "pgoutput Origin";
    case 'R':
        return "pgoutput Relation";
    case 'Y':
        return "pgoutput Type";
    case 'I':
        return "pgoutput Insert";
    case 'U':
        return "pgoutput Update";
    case 'D':
        return "pgoutput Delete";
    case 'T':
        return "pgoutput Truncate";
    case 'M':
        return "pgoutput Message";
    case 'S':
        return "pgoutput Stream Start";
    case 'E':
        return "pgoutput Stream Stop";
    case 'c':
        return "pgoutput Stream Commit";
    case 'A':
        return "pgoutput Stream Abort";
    case 'b':
        return "pgoutput Begin Prepare";
    case 'P':
        return "pgoutput Prepare";
    case 'K':
        return "pgoutput Commit Prepared";
    case 'r':
        return "pgoutput Rollback Prepared";
    case 'p':
        return "pgoutput Stream Prepare";
    default:
        return NULL;
    }
}

/* Messages that carry a leading Int32 xid inside a stream block. */
static bool has_stream_xid(uint8_t type)
{
    switch (type) {
    case 'R':
    case 'Y':
    case 'I':
    case 'U':
    case 'D':
    case 'T':
    case 'M':
        return true;
    default:
        return false;
    }
}

/* Decodes the body after the type byte; false with errstr set on failure. */
static bool read_body(pgo_parser *p, cursor *c, pgo_msg *m)
{
    uint8_t sub;
    switch (m->type) {
    case 'B': /* Int64 final LSN, Int64 commit ts, Int32 xid */
        return cur_u64(c, &m->lsn, "final LSN") && cur_i64(c, &m->ts, "commit timestamp") &&
               cur_u32(c, &m->xid, "xid");
    case 'C': /* Int8 flags(0), Int64 commit LSN, Int64 end LSN, Int64 ts */
        return zero_flags(c, &m->flags) && cur_u64(c, &m->lsn, "commit LSN") &&
               cur_u64(c, &m->end_lsn, "end LSN") && cur_i64(c, &m->ts, "commit timestamp");
    case 'O': /* Int64 origin commit LSN, String name */
        return cur_u64(c, &m->lsn, "origin LSN") && cur_str(c, &m->name, "origin name");
    case 'R':
        return read_relation(p, c, m);
    case 'Y': /* Int32 type OID, String namespace, String name */
        return cur_u32(c, &m->typoid, "type OID") && cur_str(c, &m->nspname, "namespace") &&
               cur_str(c, &m->relname, "type name");
    case 'I': /* Int32 relid, 'N', TupleData */
        if (!cur_u32(c, &m->relid, "relid") || !cur_u8(c, &sub, "tuple marker"))
            return false;
        if (sub != 'N')
            return cur_fail(c, "expected 'N' after relid, got 0x%02x", sub);
        return read_tuple(c, &m->new_tuple, &p->newvals, &p->newvals_cap);
    case 'U':
        return read_update(p, c, m);
    case 'D': /* Int32 relid, 'K' | 'O', TupleData */
        if (!cur_u32(c, &m->relid, "relid") || !cur_u8(c, &sub, "tuple marker"))
            return false;
        if (sub != 'K' && sub != 'O')
            return cur_fail(c, "expected 'K' or 'O' after relid, got 0x%02x", sub);
        m->old_kind = (char)sub;
        return read_tuple(c, &m->old_tuple, &p->oldvals, &p->oldvals_cap);
    case 'T':
        return read_truncate(p, c, m);
    case 'M':
        return read_message(c, m);
    case 'S': /* Int32 xid, Int8 first segment (0/1) */
        if (!cur_u32(c, &m->xid, "xid") || !cur_u8(c, &m->flags, "first segment"))
            return false;
        if (m->flags > 1)
            return cur_fail(c, "first segment is %u, not 0 or 1", m->flags);
        return true;
    case 'E': /* empty */
        return true;
    case 'c': /* Int32 xid, Int8 flags(0), Int64 commit LSN, Int64 end LSN,
                 Int64 commit ts */
        return cur_u32(c, &m->xid, "xid") && zero_flags(c, &m->flags) &&
               cur_u64(c, &m->lsn, "commit LSN") && cur_u64(c, &m->end_lsn, "end LSN") &&
               cur_i64(c, &m->ts, "commit timestamp");
    case 'A': /* Int32 xid, Int32 subxid */
        return cur_u32(c, &m->xid, "xid") && cur_u32(c, &m->subxid, "subxid");
    case 'b':
        return read_prepare_like(c, m, false);
    case 'P':
    case 'K':
    case 'p':
        return read_prepare_like(c, m, true);
    case 'r': /* Int8 flags(0), Int64 prepare end LSN, Int64 rollback end LSN,
                 Int64 prepare ts, Int64 rollback ts, Int32 xid, String gid */
        return zero_flags(c, &m->flags) && cur_u64(c, &m->lsn, "prepare end LSN") &&
               cur_u64(c, &m->end_lsn, "rollback end LSN") &&
               cur_i64(c, &m->ts, "prepare timestamp") &&
               cur_i64(c, &m->ts2, "rollback timestamp") && cur_u32(c, &m->xid, "xid") &&
               cur_str(c, &m->name, "gid");
    default:
        return cur_fail(c, "unhandled message type");
    }
}

int pgo_parse(pgo_parser *p, const uint8_t *buf, size_t len, pgo_msg *out, char *errstr,
              size_t errstr_size)
{
    memset(out, 0, sizeof *out);
    if (len == 0)
        return fail(errstr, errstr_size, "empty pgoutput message");
    uint8_t type = buf[0];
    const char *name = msg_name(type);
    if (!name)
        return fail(errstr, errstr_size, "unknown pgoutput message type 0x%02x", type);
    cursor c = {buf + 1, len - 1, name, errstr, errstr_size};
    out->type = (char)type;
    if (p->in_stream && has_stream_xid(type)) {
        if (!cur_u32(&c, &out->xid, "stream xid"))
            return -1;
        out->streamed = true;
    }
    if (!read_body(p, &c, out) || !cur_end(&c))
        return -1;
    /* Only a fully valid message may change the stream state. */
    if (type == 'S')
        p->in_stream = true;
    else if (type == 'E')
        p->in_stream = false;
    return 0;
}
