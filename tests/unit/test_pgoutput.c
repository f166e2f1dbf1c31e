/*
 * Unit tests for capture/pgoutput.c: every CopyData and pgoutput message type
 * is built byte by byte here (see the layouts in pgoutput.h) and decoded, and
 * every malformed variant we can derive mechanically (each prefix, a trailing
 * byte, unknown types) must be rejected without reading outside the buffer.
 * Truncated inputs are copied into exact-size heap blocks so that AddressSanitizer
 * catches any read past the end.
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cdc/buf.h"
#include "pgoutput.h"

/* ---- byte builder ---- */

static void put_u8(cdc_buf *b, uint8_t v) { cdc_buf_putc(b, v); }

static void put_u16(cdc_buf *b, uint16_t v)
{
    put_u8(b, (uint8_t)(v >> 8));
    put_u8(b, (uint8_t)v);
}

static void put_u32(cdc_buf *b, uint32_t v)
{
    for (int i = 3; i >= 0; i--)
        put_u8(b, (uint8_t)(v >> (8 * i)));
}

static void put_u64(cdc_buf *b, uint64_t v)
{
    for (int i = 7; i >= 0; i--)
        put_u8(b, (uint8_t)(v >> (8 * i)));
}

static void put_i64(cdc_buf *b, int64_t v) { put_u64(b, (uint64_t)v); }

/* String = bytes plus the terminating NUL. */
static void put_str(cdc_buf *b, const char *s) { cdc_buf_append(b, s, strlen(s) + 1); }

static void put_text(cdc_buf *b, char kind, const void *data, uint32_t len)
{
    put_u8(b, (uint8_t)kind);
    put_u32(b, len);
    cdc_buf_append(b, data, len);
}

/* ---- fixtures ---- */

#define LSN_A UINT64_C(0x0000000116B3F4A8)
#define LSN_B UINT64_C(0x0000000116B3F5D0)
#define LSN_C UINT64_C(0xFEDCBA9876543210)
#define TS_A INT64_C(757382400123456) /* 2024-01-01 00:00:00.123456 UTC */
#define TS_B INT64_C(-1)              /* negative timestamps stay signed */
#define XID_TOP UINT32_C(0x000004D2)
#define XID_SUB UINT32_C(0xFFFFFFFE)
#define RELID UINT32_C(16384)

static const uint8_t BIN3[3] = { 0x00, 0x01, 0xFF };

/* Five columns: null, unchanged TOAST, empty text, "hello", binary 00 01 ff. */
static void tuple_all_kinds(cdc_buf *b)
{
    put_u16(b, 5);
    put_u8(b, 'n');
    put_u8(b, 'u');
    put_text(b, 't', "", 0);
    put_text(b, 't', "hello", 5);
    put_text(b, 'b', BIN3, 3);
}

static void tuple_key(cdc_buf *b, const char *key)
{
    put_u16(b, 1);
    put_text(b, 't', key, (uint32_t)strlen(key));
}

static void check_all_kinds(const pgo_tuple *t)
{
    cr_assert_eq(t->ncols, 5);
    cr_assert_eq(t->values[0].kind, 'n');
    cr_assert_eq(t->values[1].kind, 'u');
    cr_assert_eq(t->values[2].kind, 't');
    cr_assert_eq(t->values[2].len, 0);
    cr_assert_not_null(t->values[2].data);
    cr_assert_eq(t->values[3].kind, 't');
    cr_assert_eq(t->values[3].len, 5);
    cr_assert_eq(memcmp(t->values[3].data, "hello", 5), 0);
    cr_assert_eq(t->values[4].kind, 'b');
    cr_assert_eq(t->values[4].len, 3);
    cr_assert_eq(memcmp(t->values[4].data, BIN3, 3), 0);
}

static void check_key(const pgo_tuple *t, const char *key)
{
    cr_assert_eq(t->ncols, 1);
    cr_assert_eq(t->values[0].kind, 't');
    cr_assert_eq(t->values[0].len, strlen(key));
    cr_assert_eq(memcmp(t->values[0].data, key, strlen(key)), 0);
}

/* Streamed variants carry the (sub)transaction xid right after the type. */
static void head(cdc_buf *b, char type, bool streamed)
{
    put_u8(b, (uint8_t)type);
    if (streamed)
        put_u32(b, XID_SUB);
}

static void msg_begin(cdc_buf *b, bool s)
{
    (void)s;
    put_u8(b, 'B');
    put_u64(b, LSN_A);
    put_i64(b, TS_A);
    put_u32(b, XID_TOP);
}

static void msg_commit(cdc_buf *b, bool s)
{
    (void)s;
    put_u8(b, 'C');
    put_u8(b, 0);
    put_u64(b, LSN_A);
    put_u64(b, LSN_B);
    put_i64(b, TS_A);
}

static void msg_origin(cdc_buf *b, bool s)
{
    (void)s;
    put_u8(b, 'O');
    put_u64(b, LSN_C);
    put_str(b, "pg_16401");
}

static void msg_relation(cdc_buf *b, bool s)
{
    head(b, 'R', s);
    put_u32(b, RELID);
    put_str(b, "public");
    put_str(b, "orders");
    put_u8(b, 'd');
    put_u16(b, 3);
    put_u8(b, 1);
    put_str(b, "id");
    put_u32(b, 23);
    put_u32(b, UINT32_MAX); /* typmod -1 */
    put_u8(b, 0);
    put_str(b, "amount");
    put_u32(b, 1700);
    put_u32(b, (10 << 16 | 2) + 4); /* numeric(10,2) */
    put_u8(b, 0);
    put_str(b, "");
    put_u32(b, 25);
    put_u32(b, UINT32_MAX);
}

static void msg_type(cdc_buf *b, bool s)
{
    head(b, 'Y', s);
    put_u32(b, 90001);
    put_str(b, "");
    put_str(b, "mood");
}

static void msg_insert(cdc_buf *b, bool s)
{
    head(b, 'I', s);
    put_u32(b, RELID);
    put_u8(b, 'N');
    tuple_all_kinds(b);
}

static void msg_update_key(cdc_buf *b, bool s)
{
    head(b, 'U', s);
    put_u32(b, RELID);
    put_u8(b, 'K');
    tuple_key(b, "41");
    put_u8(b, 'N');
    tuple_all_kinds(b);
}

static void msg_update_old(cdc_buf *b, bool s)
{
    head(b, 'U', s);
    put_u32(b, RELID);
    put_u8(b, 'O');
    tuple_all_kinds(b);
    put_u8(b, 'N');
    tuple_key(b, "new");
}

static void msg_update_plain(cdc_buf *b, bool s)
{
    head(b, 'U', s);
    put_u32(b, RELID);
    put_u8(b, 'N');
    tuple_all_kinds(b);
}

static void msg_delete_key(cdc_buf *b, bool s)
{
    head(b, 'D', s);
    put_u32(b, RELID);
    put_u8(b, 'K');
    tuple_key(b, "41");
}

static void msg_delete_old(cdc_buf *b, bool s)
{
    head(b, 'D', s);
    put_u32(b, RELID);
    put_u8(b, 'O');
    tuple_all_kinds(b);
}

static void msg_truncate(cdc_buf *b, bool s)
{
    head(b, 'T', s);
    put_u32(b, 3);
    put_u8(b, 3); /* cascade | restart identity */
    put_u32(b, RELID);
    put_u32(b, RELID + 1);
    put_u32(b, UINT32_MAX);
}

static void msg_message_tx(cdc_buf *b, bool s)
{
    head(b, 'M', s);
    put_u8(b, 1);
    put_u64(b, LSN_B);
    put_str(b, "cdc.marker");
    put_u32(b, 4);
    cdc_buf_append(b, "\0ab\0", 4);
}

static void msg_message_nontx(cdc_buf *b, bool s)
{
    head(b, 'M', s);
    put_u8(b, 0);
    put_u64(b, LSN_A);
    put_str(b, "");
    put_u32(b, 0);
}

static void msg_stream_start(cdc_buf *b, bool s)
{
    (void)s;
    put_u8(b, 'S');
    put_u32(b, XID_TOP);
    put_u8(b, 1);
}

static void msg_stream_stop(cdc_buf *b, bool s)
{
    (void)s;
    put_u8(b, 'E');
}

static void msg_stream_commit(cdc_buf *b, bool s)
{
    (void)s;
    put_u8(b, 'c');
    put_u32(b, XID_TOP);
    put_u8(b, 0);
    put_u64(b, LSN_A);
    put_u64(b, LSN_B);
    put_i64(b, TS_A);
}

static void msg_stream_abort(cdc_buf *b, bool s)
{
    (void)s;
    put_u8(b, 'A');
    put_u32(b, XID_TOP);
    put_u32(b, XID_SUB);
}

static void msg_begin_prepare(cdc_buf *b, bool s)
{
    (void)s;
    put_u8(b, 'b');
    put_u64(b, LSN_A);
    put_u64(b, LSN_B);
    put_i64(b, TS_A);
    put_u32(b, XID_TOP);
    put_str(b, "gid-1");
}

/* 'P', 'K' and 'p' share one layout. */
static void prepare_like(cdc_buf *b, char type)
{
    put_u8(b, (uint8_t)type);
    put_u8(b, 0);
    put_u64(b, LSN_A);
    put_u64(b, LSN_B);
    put_i64(b, TS_A);
    put_u32(b, XID_TOP);
    put_str(b, "gid-1");
}

static void msg_prepare(cdc_buf *b, bool s) { (void)s; prepare_like(b, 'P'); }
static void msg_commit_prepared(cdc_buf *b, bool s) { (void)s; prepare_like(b, 'K'); }
static void msg_stream_prepare(cdc_buf *b, bool s) { (void)s; prepare_like(b, 'p'); }

static void msg_rollback_prepared(cdc_buf *b, bool s)
{
    (void)s;
    put_u8(b, 'r');
    put_u8(b, 0);
    put_u64(b, LSN_A);
    put_u64(b, LSN_B);
    put_i64(b, TS_A);
    put_i64(b, TS_B);
    put_u32(b, XID_TOP);
    put_str(b, "");
}

typedef struct fixture {
    const char *name;
    void (*build)(cdc_buf *, bool streamed);
    bool streamed;
} fixture;

static const fixture ALL[] = {
    { "B", msg_begin, false },
    { "C", msg_commit, false },
    { "O", msg_origin, false },
    { "R", msg_relation, false },
    { "Y", msg_type, false },
    { "I", msg_insert, false },
    { "U/K", msg_update_key, false },
    { "U/O", msg_update_old, false },
    { "U/N", msg_update_plain, false },
    { "D/K", msg_delete_key, false },
    { "D/O", msg_delete_old, false },
    { "T", msg_truncate, false },
    { "M/tx", msg_message_tx, false },
    { "M/nontx", msg_message_nontx, false },
    { "S", msg_stream_start, false },
    { "E", msg_stream_stop, false },
    { "c", msg_stream_commit, false },
    { "A", msg_stream_abort, false },
    { "b", msg_begin_prepare, false },
    { "P", msg_prepare, false },
    { "K", msg_commit_prepared, false },
    { "r", msg_rollback_prepared, false },
    { "p", msg_stream_prepare, false },
    { "streamed R", msg_relation, true },
    { "streamed Y", msg_type, true },
    { "streamed I", msg_insert, true },
    { "streamed U/K", msg_update_key, true },
    { "streamed U/O", msg_update_old, true },
    { "streamed U/N", msg_update_plain, true },
    { "streamed D/K", msg_delete_key, true },
    { "streamed D/O", msg_delete_old, true },
    { "streamed T", msg_truncate, true },
    { "streamed M/tx", msg_message_tx, true },
    { "streamed M/nontx", msg_message_nontx, true },
};
#define NALL (sizeof ALL / sizeof ALL[0])

/* ---- harness ---- */

static pgo_parser *P;
static cdc_buf B;
static pgo_msg M;
static char ERR[256];

static void setup(void)
{
    P = pgo_parser_new();
    cdc_buf_init(&B);
    memset(&M, 0, sizeof M);
    ERR[0] = '\0';
}

static void teardown(void)
{
    pgo_parser_destroy(P);
    cdc_buf_free(&B);
}

TestSuite(pgoutput, .init = setup, .fini = teardown);
TestSuite(copydata);

static void enter_stream(void)
{
    cdc_buf s = { 0 };
    pgo_msg m;
    msg_stream_start(&s, false);
    cr_assert_eq(pgo_parse(P, s.data, s.len, &m, ERR, sizeof ERR), 0, "%s", ERR);
    cdc_buf_free(&s);
}

/* Parse B; fail the test with the parser's message if it is rejected. */
static void parse_ok(void)
{
    int rc = pgo_parse(P, B.data, B.len, &M, ERR, sizeof ERR);
    cr_assert_eq(rc, 0, "rejected: %s", ERR);
}

static void parse_fails(const char *needle)
{
    ERR[0] = '\0';
    int rc = pgo_parse(P, B.data, B.len, &M, ERR, sizeof ERR);
    cr_assert_eq(rc, -1, "accepted a malformed message");
    cr_assert_neq(ERR[0], '\0', "no error text");
    cr_assert_lt(strlen(ERR), sizeof ERR);
    if (needle)
        cr_assert_not_null(strstr(ERR, needle), "error \"%s\" lacks \"%s\"",
                           ERR, needle);
}

/* Parse an exact-size heap copy of buf[0..len) so ASan sees over-reads. */
static int parse_copy(pgo_parser *p, const uint8_t *buf, size_t len)
{
    uint8_t *copy = malloc(len ? len : 1);
    cr_assert_not_null(copy);
    if (len)
        memcpy(copy, buf, len);
    pgo_msg m;
    char err[128];
    err[0] = '\0';
    int rc = pgo_parse(p, copy, len, &m, err, sizeof err);
    if (rc != 0)
        cr_assert_neq(err[0], '\0', "no error text for length %zu", len);
    free(copy);
    return rc;
}

/* ---- CopyData framing ---- */

Test(copydata, xlogdata_fields_and_payload)
{
    cdc_buf b = { 0 };
    put_u8(&b, 'w');
    put_u64(&b, LSN_A);
    put_u64(&b, LSN_C);
    put_i64(&b, TS_A);
    msg_stream_stop(&b, false);
    pgo_copydata cd;
    char err[128];
    cr_assert_eq(pgo_parse_copydata(b.data, b.len, &cd, err, sizeof err), 0, "%s", err);
    cr_assert_eq(cd.kind, 'w');
    cr_assert_eq(cd.wal_start, LSN_A);
    cr_assert_eq(cd.wal_end, LSN_C);
    cr_assert_eq(cd.send_time, TS_A);
    cr_assert_eq(cd.payload, b.data + 25);
    cr_assert_eq(cd.payload_len, 1);
    cr_assert_eq(cd.payload[0], 'E');
    cdc_buf_free(&b);
}

Test(copydata, xlogdata_with_empty_payload_is_accepted)
{
    cdc_buf b = { 0 };
    put_u8(&b, 'w');
    put_u64(&b, 1);
    put_u64(&b, 2);
    put_i64(&b, TS_B);
    pgo_copydata cd;
    cr_assert_eq(pgo_parse_copydata(b.data, b.len, &cd, NULL, 0), 0);
    cr_assert_eq(cd.payload_len, 0);
    cr_assert_eq(cd.send_time, -1);
    cdc_buf_free(&b);
}

Test(copydata, keepalive_fields)
{
    for (uint8_t reply = 0; reply <= 1; reply++) {
        cdc_buf b = { 0 };
        put_u8(&b, 'k');
        put_u64(&b, LSN_C);
        put_i64(&b, TS_A);
        put_u8(&b, reply);
        pgo_copydata cd;
        char err[128];
        cr_assert_eq(pgo_parse_copydata(b.data, b.len, &cd, err, sizeof err), 0, "%s", err);
        cr_assert_eq(cd.kind, 'k');
        cr_assert_eq(cd.wal_end, LSN_C);
        cr_assert_eq(cd.send_time, TS_A);
        cr_assert_eq(cd.reply_requested, reply == 1);
        cr_assert_null(cd.payload);
        cdc_buf_free(&b);
    }
}

Test(copydata, keepalive_with_trailing_byte_is_rejected)
{
    cdc_buf b = { 0 };
    put_u8(&b, 'k');
    put_u64(&b, LSN_C);
    put_i64(&b, TS_A);
    put_u8(&b, 0);
    put_u8(&b, 0);
    pgo_copydata cd;
    char err[128];
    cr_assert_eq(pgo_parse_copydata(b.data, b.len, &cd, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "trailing"), "%s", err);
    cdc_buf_free(&b);
}

Test(copydata, unknown_and_empty_messages_are_rejected)
{
    uint8_t bytes[18] = { 'r' };
    pgo_copydata cd;
    char err[128];
    cr_assert_eq(pgo_parse_copydata(bytes, sizeof bytes, &cd, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "unknown"), "%s", err);
    cr_assert_eq(pgo_parse_copydata(bytes, 0, &cd, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "empty"), "%s", err);
}

Test(copydata, every_short_header_is_rejected)
{
    uint8_t w[25] = { 'w' }, k[18] = { 'k' };
    pgo_copydata cd;
    char err[128];
    for (size_t n = 0; n < sizeof w; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, w, n);
        cr_assert_eq(pgo_parse_copydata(copy, n, &cd, err, sizeof err), -1, "w len %zu", n);
        free(copy);
    }
    for (size_t n = 0; n < sizeof k; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, k, n);
        cr_assert_eq(pgo_parse_copydata(copy, n, &cd, err, sizeof err), -1, "k len %zu", n);
        free(copy);
    }
}

Test(copydata, status_update_layout)
{
    uint8_t out[PGO_STATUS_LEN + 4];
    memset(out, 0xAA, sizeof out);
    size_t n = pgo_build_status(out, UINT64_C(0x0102030405060708),
                                UINT64_C(0x1112131415161718),
                                UINT64_C(0x2122232425262728),
                                INT64_C(0x3132333435363738), true);
    const uint8_t want[PGO_STATUS_LEN] = {
        'r',
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
        0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18,
        0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28,
        0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38,
        0x01,
    };
    cr_assert_eq(n, 34);
    cr_assert_eq(memcmp(out, want, sizeof want), 0);
    cr_assert_eq(out[PGO_STATUS_LEN], 0xAA, "wrote past the 34 bytes");
    pgo_build_status(out, 0, 0, 0, -1, false);
    for (int i = 25; i < 33; i++)
        cr_assert_eq(out[i], 0xFF, "negative send time byte %d", i);
    cr_assert_eq(out[33], 0);
}

/*
 * Seconds from the clock pgo_now reads. Not time(NULL): on Linux it reads
 * the coarse clock, up to a tick behind, so just after a second boundary it
 * could still say the previous second after pgo_now had seen the new one.
 */
static int64_t realtime_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

Test(copydata, now_uses_the_2000_epoch_in_microseconds)
{
    int64_t before = realtime_s();
    int64_t now = pgo_now();
    int64_t after = realtime_s();
    int64_t unix_s = pgo_time_to_unix_ms(now) / 1000;
    cr_assert_geq(unix_s, before);
    cr_assert_leq(unix_s, after);
    cr_assert_eq(pgo_time_to_unix_ms(0), INT64_C(946684800000));
    cr_assert_eq(pgo_time_to_unix_ms(TS_A), INT64_C(1704067200123));
}

/* ---- each pgoutput message ---- */

Test(pgoutput, begin)
{
    msg_begin(&B, false);
    parse_ok();
    cr_assert_eq(M.type, 'B');
    cr_assert_eq(M.lsn, LSN_A);
    cr_assert_eq(M.ts, TS_A);
    cr_assert_eq(M.xid, XID_TOP);
    cr_assert_not(M.streamed);
}

Test(pgoutput, commit)
{
    msg_commit(&B, false);
    parse_ok();
    cr_assert_eq(M.type, 'C');
    cr_assert_eq(M.flags, 0);
    cr_assert_eq(M.lsn, LSN_A);
    cr_assert_eq(M.end_lsn, LSN_B);
    cr_assert_eq(M.ts, TS_A);
}

Test(pgoutput, origin)
{
    msg_origin(&B, false);
    parse_ok();
    cr_assert_eq(M.type, 'O');
    cr_assert_eq(M.lsn, LSN_C);
    cr_assert_str_eq(M.name, "pg_16401");
    cr_assert_eq((const uint8_t *)M.name, B.data + 9, "name points into the input");
}

Test(pgoutput, relation_with_columns)
{
    msg_relation(&B, false);
    parse_ok();
    cr_assert_eq(M.type, 'R');
    cr_assert_not(M.streamed);
    cr_assert_eq(M.xid, 0);
    cr_assert_eq(M.relid, RELID);
    cr_assert_str_eq(M.nspname, "public");
    cr_assert_str_eq(M.relname, "orders");
    cr_assert_eq(M.replident, 'd');
    cr_assert_eq(M.ncols, 3);
    cr_assert_eq(M.cols[0].flags, 1);
    cr_assert_str_eq(M.cols[0].name, "id");
    cr_assert_eq(M.cols[0].type_oid, 23);
    cr_assert_eq(M.cols[0].typmod, -1);
    cr_assert_eq(M.cols[1].flags, 0);
    cr_assert_str_eq(M.cols[1].name, "amount");
    cr_assert_eq(M.cols[1].type_oid, 1700);
    cr_assert_eq(M.cols[1].typmod, (10 << 16 | 2) + 4);
    cr_assert_str_eq(M.cols[2].name, "");
    cr_assert_eq(M.cols[2].type_oid, 25);
}

Test(pgoutput, relation_replica_identities)
{
    const char idents[] = { 'd', 'n', 'f', 'i' };
    for (size_t i = 0; i < sizeof idents; i++) {
        cdc_buf_reset(&B);
        put_u8(&B, 'R');
        put_u32(&B, 1);
        put_str(&B, "s");
        put_str(&B, "t");
        put_u8(&B, (uint8_t)idents[i]);
        put_u16(&B, 0);
        parse_ok();
        cr_assert_eq(M.replident, idents[i]);
        cr_assert_eq(M.ncols, 0);
    }
}

Test(pgoutput, type)
{
    msg_type(&B, false);
    parse_ok();
    cr_assert_eq(M.type, 'Y');
    cr_assert_eq(M.typoid, 90001);
    cr_assert_str_eq(M.nspname, "");
    cr_assert_str_eq(M.relname, "mood");
}

Test(pgoutput, insert_with_every_value_kind)
{
    msg_insert(&B, false);
    parse_ok();
    cr_assert_eq(M.type, 'I');
    cr_assert_eq(M.relid, RELID);
    cr_assert_eq(M.old_kind, 0);
    check_all_kinds(&M.new_tuple);
}

Test(pgoutput, insert_with_multi_kilobyte_value)
{
    size_t big = 70000; /* larger than 64 KiB, so no 16-bit length slips by */
    char *text = malloc(big);
    for (size_t i = 0; i < big; i++)
        text[i] = (char)('a' + i % 26);
    put_u8(&B, 'I');
    put_u32(&B, RELID);
    put_u8(&B, 'N');
    put_u16(&B, 2);
    put_text(&B, 't', text, (uint32_t)big);
    put_text(&B, 'b', text, 4096);
    parse_ok();
    cr_assert_eq(M.new_tuple.ncols, 2);
    cr_assert_eq(M.new_tuple.values[0].len, big);
    cr_assert_eq(memcmp(M.new_tuple.values[0].data, text, big), 0);
    cr_assert_eq(M.new_tuple.values[1].kind, 'b');
    cr_assert_eq(M.new_tuple.values[1].len, 4096);
    free(text);
}

Test(pgoutput, update_with_key)
{
    msg_update_key(&B, false);
    parse_ok();
    cr_assert_eq(M.type, 'U');
    cr_assert_eq(M.relid, RELID);
    cr_assert_eq(M.old_kind, 'K');
    check_key(&M.old_tuple, "41");
    check_all_kinds(&M.new_tuple);
}

Test(pgoutput, update_with_old_row)
{
    msg_update_old(&B, false);
    parse_ok();
    cr_assert_eq(M.old_kind, 'O');
    check_all_kinds(&M.old_tuple);
    check_key(&M.new_tuple, "new");
    cr_assert_neq(M.old_tuple.values, M.new_tuple.values,
                  "old and new tuples share storage");
}

Test(pgoutput, update_without_old_tuple)
{
    msg_update_plain(&B, false);
    parse_ok();
    cr_assert_eq(M.old_kind, 0);
    cr_assert_eq(M.old_tuple.ncols, 0);
    check_all_kinds(&M.new_tuple);
}

Test(pgoutput, delete_with_key)
{
    msg_delete_key(&B, false);
    parse_ok();
    cr_assert_eq(M.type, 'D');
    cr_assert_eq(M.relid, RELID);
    cr_assert_eq(M.old_kind, 'K');
    check_key(&M.old_tuple, "41");
    cr_assert_eq(M.new_tuple.ncols, 0);
}

Test(pgoutput, delete_with_old_row)
{
    msg_delete_old(&B, false);
    parse_ok();
    cr_assert_eq(M.old_kind, 'O');
    check_all_kinds(&M.old_tuple);
}

Test(pgoutput, truncate_several_relations_with_options)
{
    msg_truncate(&B, false);
    parse_ok();
    cr_assert_eq(M.type, 'T');
    cr_assert_eq(M.flags, 3);
    cr_assert_eq(M.nrelids, 3);
    cr_assert_eq(M.relids[0], RELID);
    cr_assert_eq(M.relids[1], RELID + 1);
    cr_assert_eq(M.relids[2], UINT32_MAX);
}

Test(pgoutput, truncate_each_option)
{
    for (uint8_t opt = 0; opt <= 2; opt++) {
        cdc_buf_reset(&B);
        put_u8(&B, 'T');
        put_u32(&B, 1);
        put_u8(&B, opt);
        put_u32(&B, RELID);
        parse_ok();
        cr_assert_eq(M.flags, opt);
        cr_assert_eq(M.nrelids, 1);
    }
}

Test(pgoutput, message_transactional)
{
    msg_message_tx(&B, false);
    parse_ok();
    cr_assert_eq(M.type, 'M');
    cr_assert_eq(M.flags, 1);
    cr_assert_eq(M.lsn, LSN_B);
    cr_assert_str_eq(M.name, "cdc.marker");
    cr_assert_eq(M.content_len, 4);
    cr_assert_eq(memcmp(M.content, "\0ab\0", 4), 0);
}

Test(pgoutput, message_not_transactional_with_empty_content)
{
    msg_message_nontx(&B, false);
    parse_ok();
    cr_assert_eq(M.flags, 0);
    cr_assert_eq(M.lsn, LSN_A);
    cr_assert_str_eq(M.name, "");
    cr_assert_eq(M.content_len, 0);
}

Test(pgoutput, stream_start)
{
    msg_stream_start(&B, false);
    parse_ok();
    cr_assert_eq(M.type, 'S');
    cr_assert_eq(M.xid, XID_TOP);
    cr_assert_eq(M.flags, 1);
    cr_assert_not(M.streamed);
}

Test(pgoutput, stream_stop)
{
    enter_stream();
    msg_stream_stop(&B, false);
    parse_ok();
    cr_assert_eq(M.type, 'E');
    cr_assert_not(M.streamed);
}

Test(pgoutput, stream_commit)
{
    msg_stream_commit(&B, false);
    parse_ok();
    cr_assert_eq(M.type, 'c');
    cr_assert_eq(M.xid, XID_TOP);
    cr_assert_eq(M.lsn, LSN_A);
    cr_assert_eq(M.end_lsn, LSN_B);
    cr_assert_eq(M.ts, TS_A);
}

Test(pgoutput, stream_abort)
{
    msg_stream_abort(&B, false);
    parse_ok();
    cr_assert_eq(M.type, 'A');
    cr_assert_eq(M.xid, XID_TOP);
    cr_assert_eq(M.subxid, XID_SUB);
}

Test(pgoutput, begin_prepare)
{
    msg_begin_prepare(&B, false);
    parse_ok();
    cr_assert_eq(M.type, 'b');
    cr_assert_eq(M.lsn, LSN_A);
    cr_assert_eq(M.end_lsn, LSN_B);
    cr_assert_eq(M.ts, TS_A);
    cr_assert_eq(M.xid, XID_TOP);
    cr_assert_str_eq(M.name, "gid-1");
}

Test(pgoutput, prepare_commit_prepared_and_stream_prepare)
{
    void (*builders[])(cdc_buf *, bool) = { msg_prepare, msg_commit_prepared,
                                            msg_stream_prepare };
    const char types[] = { 'P', 'K', 'p' };
    for (size_t i = 0; i < 3; i++) {
        cdc_buf_reset(&B);
        builders[i](&B, false);
        parse_ok();
        cr_assert_eq(M.type, types[i]);
        cr_assert_eq(M.flags, 0);
        cr_assert_eq(M.lsn, LSN_A);
        cr_assert_eq(M.end_lsn, LSN_B);
        cr_assert_eq(M.ts, TS_A);
        cr_assert_eq(M.xid, XID_TOP);
        cr_assert_str_eq(M.name, "gid-1");
    }
}

Test(pgoutput, rollback_prepared)
{
    msg_rollback_prepared(&B, false);
    parse_ok();
    cr_assert_eq(M.type, 'r');
    cr_assert_eq(M.lsn, LSN_A);
    cr_assert_eq(M.end_lsn, LSN_B);
    cr_assert_eq(M.ts, TS_A);
    cr_assert_eq(M.ts2, TS_B);
    cr_assert_eq(M.xid, XID_TOP);
    cr_assert_str_eq(M.name, "");
}

/* ---- stream blocks ---- */

Test(pgoutput, streamed_messages_carry_the_xid_prefix)
{
    enter_stream();
    for (size_t i = 0; i < NALL; i++) {
        if (!ALL[i].streamed)
            continue;
        cdc_buf_reset(&B);
        ALL[i].build(&B, true);
        parse_ok();
        cr_assert(M.streamed, "%s", ALL[i].name);
        cr_assert_eq(M.xid, XID_SUB, "%s", ALL[i].name);
    }
}

Test(pgoutput, streamed_fields_decode_like_plain_ones)
{
    enter_stream();
    msg_relation(&B, true);
    parse_ok();
    cr_assert_eq(M.relid, RELID);
    cr_assert_str_eq(M.relname, "orders");
    cr_assert_eq(M.ncols, 3);

    cdc_buf_reset(&B);
    msg_type(&B, true);
    parse_ok();
    cr_assert_eq(M.typoid, 90001);

    cdc_buf_reset(&B);
    msg_insert(&B, true);
    parse_ok();
    cr_assert_eq(M.relid, RELID);
    check_all_kinds(&M.new_tuple);

    cdc_buf_reset(&B);
    msg_update_key(&B, true);
    parse_ok();
    cr_assert_eq(M.old_kind, 'K');
    check_key(&M.old_tuple, "41");
    check_all_kinds(&M.new_tuple);

    cdc_buf_reset(&B);
    msg_delete_old(&B, true);
    parse_ok();
    cr_assert_eq(M.old_kind, 'O');
    check_all_kinds(&M.old_tuple);

    cdc_buf_reset(&B);
    msg_truncate(&B, true);
    parse_ok();
    cr_assert_eq(M.nrelids, 3);
    cr_assert_eq(M.relids[2], UINT32_MAX);

    cdc_buf_reset(&B);
    msg_message_tx(&B, true);
    parse_ok();
    cr_assert_str_eq(M.name, "cdc.marker");
    cr_assert_eq(M.content_len, 4);
}

Test(pgoutput, control_messages_inside_a_stream_have_no_prefix)
{
    enter_stream();
    msg_origin(&B, false);
    parse_ok();
    cr_assert_not(M.streamed);
    cr_assert_str_eq(M.name, "pg_16401");
}

Test(pgoutput, stream_stop_ends_the_prefix)
{
    enter_stream();
    msg_stream_stop(&B, false);
    parse_ok();
    cdc_buf_reset(&B);
    msg_insert(&B, false);
    parse_ok();
    cr_assert_not(M.streamed);
    cr_assert_eq(M.relid, RELID);
}

Test(pgoutput, stream_stop_without_start_is_accepted)
{
    msg_stream_stop(&B, false);
    parse_ok();
    cdc_buf_reset(&B);
    msg_insert(&B, false);
    parse_ok();
    cr_assert_not(M.streamed);
}

Test(pgoutput, unprefixed_change_inside_a_stream_is_rejected)
{
    enter_stream();
    msg_insert(&B, false); /* the relid is read as xid, the rest is short */
    parse_fails(NULL);
}

Test(pgoutput, reset_forgets_the_stream_block)
{
    enter_stream();
    pgo_parser_reset(P);
    msg_insert(&B, false);
    parse_ok();
    cr_assert_not(M.streamed);
}

Test(pgoutput, rejected_stream_start_does_not_open_a_block)
{
    put_u8(&B, 'S');
    put_u32(&B, XID_TOP);
    put_u8(&B, 2); /* first segment must be 0 or 1 */
    parse_fails("first segment");
    cdc_buf_reset(&B);
    msg_insert(&B, false);
    parse_ok();
    cr_assert_not(M.streamed);
}

/* ---- storage reuse ---- */

Test(pgoutput, arrays_grow_and_are_reused)
{
    for (int round = 0; round < 3; round++) {
        uint16_t n = round == 1 ? 1000 : 2;
        cdc_buf_reset(&B);
        put_u8(&B, 'U');
        put_u32(&B, RELID);
        put_u8(&B, 'O');
        put_u16(&B, n);
        for (uint16_t i = 0; i < n; i++)
            put_u8(&B, 'n');
        put_u8(&B, 'N');
        put_u16(&B, n);
        for (uint16_t i = 0; i < n; i++)
            put_text(&B, 't', "v", 1);
        parse_ok();
        cr_assert_eq(M.old_tuple.ncols, n);
        cr_assert_eq(M.new_tuple.ncols, n);
        cr_assert_eq(M.old_tuple.values[n - 1].kind, 'n');
        cr_assert_eq(M.new_tuple.values[n - 1].kind, 't');
        cr_assert_eq(M.new_tuple.values[n - 1].data[0], 'v');
    }
    cdc_buf_reset(&B);
    put_u8(&B, 'T');
    put_u32(&B, 5000);
    put_u8(&B, 0);
    for (uint32_t i = 0; i < 5000; i++)
        put_u32(&B, i);
    parse_ok();
    cr_assert_eq(M.relids[4999], 4999);
}

/* ---- malformed input ---- */

Test(pgoutput, every_truncation_of_every_message_is_rejected)
{
    for (size_t i = 0; i < NALL; i++) {
        cdc_buf full = { 0 };
        ALL[i].build(&full, ALL[i].streamed);
        if (ALL[i].streamed)
            enter_stream();
        else
            pgo_parser_reset(P);
        cr_assert_eq(parse_copy(P, full.data, full.len), 0, "%s whole", ALL[i].name);
        for (size_t n = 0; n < full.len; n++) {
            /* A stop/start whose parse succeeded would change the state. */
            if (ALL[i].streamed)
                enter_stream();
            cr_assert_eq(parse_copy(P, full.data, n), -1, "%s accepted at %zu of %zu",
                         ALL[i].name, n, full.len);
        }
        cdc_buf_free(&full);
    }
}

Test(pgoutput, a_trailing_byte_after_any_message_is_rejected)
{
    for (size_t i = 0; i < NALL; i++) {
        if (ALL[i].streamed)
            enter_stream();
        else
            pgo_parser_reset(P);
        cdc_buf_reset(&B);
        ALL[i].build(&B, ALL[i].streamed);
        put_u8(&B, 0);
        ERR[0] = '\0';
        cr_assert_eq(pgo_parse(P, B.data, B.len, &M, ERR, sizeof ERR), -1, "%s", ALL[i].name);
        cr_assert_not_null(strstr(ERR, "trailing"), "%s: %s", ALL[i].name, ERR);
    }
}

Test(pgoutput, unknown_message_types_are_rejected)
{
    const char *known = "BCORYIUDTMSEcAbPKrp";
    for (int t = 0; t < 256; t++) {
        if (t != 0 && strchr(known, t))
            continue;
        uint8_t bytes[32] = { (uint8_t)t };
        ERR[0] = '\0';
        cr_assert_eq(pgo_parse(P, bytes, sizeof bytes, &M, ERR, sizeof ERR), -1,
                     "type 0x%02x accepted", t);
        cr_assert_not_null(strstr(ERR, "unknown"), "%s", ERR);
    }
}

Test(pgoutput, empty_message_is_rejected)
{
    uint8_t dummy = 'B';
    cr_assert_eq(pgo_parse(P, &dummy, 0, &M, ERR, sizeof ERR), -1);
    cr_assert_not_null(strstr(ERR, "empty"), "%s", ERR);
}

Test(pgoutput, unknown_tuple_value_kind_is_rejected)
{
    put_u8(&B, 'I');
    put_u32(&B, RELID);
    put_u8(&B, 'N');
    put_u16(&B, 2);
    put_u8(&B, 'n');
    put_u8(&B, 'x');
    parse_fails("kind");
}

Test(pgoutput, update_with_bad_marker_after_relid_is_rejected)
{
    put_u8(&B, 'U');
    put_u32(&B, RELID);
    put_u8(&B, 'X');
    tuple_key(&B, "1");
    parse_fails("expected");
}

Test(pgoutput, update_old_tuple_not_followed_by_new_is_rejected)
{
    put_u8(&B, 'U');
    put_u32(&B, RELID);
    put_u8(&B, 'K');
    tuple_key(&B, "1");
    put_u8(&B, 'K');
    tuple_key(&B, "2");
    parse_fails("expected 'N'");
}

Test(pgoutput, insert_without_new_marker_is_rejected)
{
    put_u8(&B, 'I');
    put_u32(&B, RELID);
    put_u8(&B, 'K');
    tuple_key(&B, "1");
    parse_fails("expected 'N'");
}

Test(pgoutput, delete_with_new_marker_is_rejected)
{
    put_u8(&B, 'D');
    put_u32(&B, RELID);
    put_u8(&B, 'N');
    tuple_key(&B, "1");
    parse_fails("expected 'K' or 'O'");
}

Test(pgoutput, negative_value_length_is_rejected)
{
    put_u8(&B, 'I');
    put_u32(&B, RELID);
    put_u8(&B, 'N');
    put_u16(&B, 1);
    put_u8(&B, 't');
    put_u32(&B, UINT32_MAX); /* -1 */
    cdc_buf_append(&B, "abcd", 4);
    parse_fails("negative");
}

Test(pgoutput, oversized_value_length_is_rejected)
{
    put_u8(&B, 'I');
    put_u32(&B, RELID);
    put_u8(&B, 'N');
    put_u16(&B, 1);
    put_u8(&B, 'b');
    put_u32(&B, 5);
    cdc_buf_append(&B, "abcd", 4);
    parse_fails("exceeds");
}

Test(pgoutput, negative_message_content_length_is_rejected)
{
    put_u8(&B, 'M');
    put_u8(&B, 1);
    put_u64(&B, LSN_A);
    put_str(&B, "p");
    put_u32(&B, 0x80000000u);
    parse_fails("negative");
}

Test(pgoutput, oversized_counts_are_rejected_before_allocating)
{
    put_u8(&B, 'T');
    put_u32(&B, 0x7FFFFFFF);
    put_u8(&B, 0);
    put_u32(&B, 1);
    parse_fails("do not fit");

    cdc_buf_reset(&B);
    put_u8(&B, 'T');
    put_u32(&B, 0xFFFFFFFF);
    put_u8(&B, 0);
    parse_fails("negative");

    cdc_buf_reset(&B);
    put_u8(&B, 'I');
    put_u32(&B, RELID);
    put_u8(&B, 'N');
    put_u16(&B, 0xFFFF);
    put_u8(&B, 'n');
    parse_fails("does not fit");

    cdc_buf_reset(&B);
    put_u8(&B, 'R');
    put_u32(&B, RELID);
    put_str(&B, "s");
    put_str(&B, "t");
    put_u8(&B, 'd');
    put_u16(&B, 0xFFFF);
    put_u8(&B, 0);
    parse_fails("do not fit");
}

Test(pgoutput, unterminated_string_is_rejected)
{
    put_u8(&B, 'O');
    put_u64(&B, LSN_A);
    cdc_buf_append(&B, "no-nul", 6);
    parse_fails("unterminated");
}

Test(pgoutput, unknown_flags_are_rejected)
{
    put_u8(&B, 'C');
    put_u8(&B, 1);
    put_u64(&B, LSN_A);
    put_u64(&B, LSN_B);
    put_i64(&B, TS_A);
    parse_fails("flags");

    cdc_buf_reset(&B);
    put_u8(&B, 'M');
    put_u8(&B, 2);
    put_u64(&B, LSN_A);
    put_str(&B, "p");
    put_u32(&B, 0);
    parse_fails("flags");

    cdc_buf_reset(&B);
    put_u8(&B, 'T');
    put_u32(&B, 0);
    put_u8(&B, 4);
    parse_fails("options");

    cdc_buf_reset(&B);
    prepare_like(&B, 'K');
    B.data[1] = 0x80;
    parse_fails("flags");
}

Test(pgoutput, unknown_replica_identity_is_rejected)
{
    msg_relation(&B, false);
    B.data[1 + 4 + 7 + 7] = 'x';
    parse_fails("replica identity");
}

Test(pgoutput, error_text_is_bounded_by_errstr_size)
{
    char small[8];
    memset(small, 'Z', sizeof small);
    uint8_t bad = 0xFE;
    cr_assert_eq(pgo_parse(P, &bad, 1, &M, small, sizeof small), -1);
    cr_assert_eq(small[7], '\0');
    cr_assert_eq(pgo_parse(P, &bad, 1, &M, NULL, 0), -1);
}
