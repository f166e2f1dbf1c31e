/*
 * Relation cache and Avro schema generation (see relcache.h).
 *
 * Schema shape, per table version:
 *   key   : record "Key"   { one field per key column, non-null type }
 *   value : record "Envelope" from schemas/envelope.avsc, whose before/after
 *           are the record "Value" { one field per column, ["null", T] }
 * Every field carries "pg.name" (the true column name), "pg.type"
 * (format_type), "pg.nullable"; enums add "pg.enum" (labels in order) and
 * domains "pg.domain". The Value record carries "pg.schema", "pg.table" and
 * "pg.key" (true names of the key columns) so a consumer can create the
 * table without any other source.
 *
 * Every Value field is a union with null, NOT NULL columns included: a
 * delete under REPLICA IDENTITY DEFAULT only carries the key columns, and an
 * unchanged TOASTed value is not sent at all; "pg.nullable" keeps the
 * constraint for targets.
 *
 * The namespace ends in "v" + a hash of the schema's full JSON (the key's in
 * "k" + a hash of the key record only, so key bytes survive added columns). Parsing
 * Canonical Form (and so the fingerprint) ignores logical types and custom
 * properties: without the hash, numeric(18,2) becoming numeric(20,4) would
 * keep the fingerprint while changing the meaning of the bytes, and a
 * consumer could decode one version's amounts with the other's scale.
 */
#include "relcache.h"

#include <stdlib.h>
#include <string.h>

#include <avro.h>

#include "cdc/buf.h"
#include "cdc/fingerprint.h"
#include "cdc/kafka.h"
#include "cdc/log.h"
#include "cdc/schemas.h"

struct relcache {
    relation **slots; /* open addressing on relid, NULL = empty */
    size_t cap;
    size_t count;
};

relcache *relcache_new(void)
{
    relcache *rc = cdc_xcalloc(1, sizeof *rc);
    rc->cap = 64;
    rc->slots = cdc_xcalloc(rc->cap, sizeof *rc->slots);
    return rc;
}

void relation_forget_labels(rel_col *c)
{
    for (int i = 0; i < c->nlabels; i++)
        free(c->labels[i]);
    free(c->labels);
    c->labels = NULL;
    c->nlabels = 0;
}

void relation_free(relation *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->ncols; i++) {
        free(r->cols[i].name);
        free(r->cols[i].field);
        relation_forget_labels(&r->cols[i]);
    }
    free(r->cols);
    free(r->key_idx);
    free(r->nspname);
    free(r->relname);
    free(r->topic);
    free(r->key_schema);
    free(r->value_schema);
    free(r);
}

void relcache_clear(relcache *rc)
{
    for (size_t i = 0; i < rc->cap; i++) {
        relation_free(rc->slots[i]);
        rc->slots[i] = NULL;
    }
    rc->count = 0;
}

void relcache_destroy(relcache *rc)
{
    if (!rc)
        return;
    relcache_clear(rc);
    free(rc->slots);
    free(rc);
}

static size_t slot_of(const relcache *rc, uint32_t relid)
{
    size_t i = (relid * 2654435761u) & (rc->cap - 1);
    while (rc->slots[i] && rc->slots[i]->relid != relid)
        i = (i + 1) & (rc->cap - 1);
    return i;
}

relation *relcache_get(relcache *rc, uint32_t relid)
{
    return rc->slots[slot_of(rc, relid)];
}

static void put(relcache *rc, relation *r)
{
    if ((rc->count + 1) * 2 > rc->cap) {
        relation **old = rc->slots;
        size_t oldcap = rc->cap;
        rc->cap *= 2;
        rc->slots = cdc_xcalloc(rc->cap, sizeof *rc->slots);
        for (size_t i = 0; i < oldcap; i++)
            if (old[i])
                rc->slots[slot_of(rc, old[i]->relid)] = old[i];
        free(old);
    }
    size_t i = slot_of(rc, r->relid);
    if (rc->slots[i])
        relation_free(rc->slots[i]);
    else
        rc->count++;
    rc->slots[i] = r;
}

void relcache_avro_name(const char *ident, char *out, size_t out_size)
{
    size_t o = 0;
    if (out_size == 0)
        return;
    if (!(ident[0] >= 'A' && ident[0] <= 'Z') && !(ident[0] >= 'a' && ident[0] <= 'z') &&
        ident[0] != '_' && o + 1 < out_size)
        out[o++] = '_';
    for (const char *p = ident; *p && o + 1 < out_size; p++) {
        char c = *p;
        bool ok =
            (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
        out[o++] = ok ? c : '_';
    }
    out[o] = '\0';
}

/* Field names must be unique in a record: suffix _2, _3... on collision. */
static char *unique_field(const rel_col *cols, int n, const char *ident)
{
    char base[256], cand[300];
    relcache_avro_name(ident, base, sizeof base);
    snprintf(cand, sizeof cand, "%s", base);
    for (int suffix = 2;; suffix++) {
        bool clash = false;
        for (int i = 0; i < n; i++)
            if (strcmp(cols[i].field, cand) == 0)
                clash = true;
        if (!clash)
            return cdc_xstrdup(cand);
        snprintf(cand, sizeof cand, "%s_%d", base, suffix);
    }
}

static json_t *field_json(const rel_col *c, const rel_colinfo *ci, bool nullable_union)
{
    json_t *t = cdc_pgtype_avro_type(&c->type);
    json_t *f = json_object();
    json_object_set_new(f, "name", json_string(c->field));
    if (nullable_union) {
        json_object_set_new(f, "type", json_pack("[s o]", "null", t));
        json_object_set_new(f, "default", json_null());
    } else {
        json_object_set_new(f, "type", t);
    }
    json_object_set_new(f, "pg.name", json_string(ci->name));
    json_object_set_new(f, "pg.type", json_string(ci->pg_type));
    json_object_set_new(f, "pg.nullable", json_boolean(!ci->notnull && !ci->key));
    if (ci->domain)
        json_object_set_new(f, "pg.domain", json_string(ci->domain));
    if (ci->enum_labels)
        json_object_set(f, "pg.enum", ci->enum_labels);
    return f;
}

/* Replace the template's placeholder strings (see schemas/envelope.avsc). */
static int fill_template(json_t *node, json_t *row, json_t *source)
{
    if (json_is_array(node)) {
        for (size_t i = 0; i < json_array_size(node); i++) {
            json_t *v = json_array_get(node, i);
            if (json_is_string(v) && strcmp(json_string_value(v), "__ROW__") == 0)
                json_array_set(node, i, row);
            else if (json_is_string(v) && strcmp(json_string_value(v), "__ROW_NAME__") == 0)
                json_array_set_new(node, i, json_string("Value"));
            else
                fill_template(v, row, source);
        }
    } else if (json_is_object(node)) {
        const char *k;
        json_t *v;
        json_object_foreach(node, k, v)
        {
            if (json_is_string(v) && strcmp(json_string_value(v), "__SOURCE__") == 0)
                json_object_set(node, k, source);
            else
                fill_template(v, row, source);
        }
    }
    return 0;
}

static char *dump(const json_t *j)
{
    return json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
}

/* Reject anything avro-c cannot parse before a consumer has to. */
static int check_avro(const char *json, char *errstr, size_t errstr_size)
{
    avro_schema_t s;
    if (avro_schema_from_json_length(json, strlen(json), &s) != 0) {
        snprintf(errstr, errstr_size, "generated schema rejected by avro-c: %s", avro_strerror());
        return -1;
    }
    avro_schema_decref(s);
    return 0;
}

int relcache_build(relation *r, const rel_colinfo *ci, int ncols, char *errstr, size_t errstr_size)
{
    int rc = -1;
    json_t *row = NULL, *key = NULL, *env = NULL, *source = NULL;
    char *tag_text = NULL;

    r->ncols = ncols;
    r->cols = cdc_xcalloc((size_t)(ncols ? ncols : 1), sizeof *r->cols);
    r->key_idx = cdc_xcalloc((size_t)(ncols ? ncols : 1), sizeof *r->key_idx);
    r->nkey = 0;
    for (int i = 0; i < ncols; i++) {
        r->cols[i].name = cdc_xstrdup(ci[i].name);
        r->cols[i].field = unique_field(r->cols, i, ci[i].name);
        r->cols[i].type = cdc_pgtype_map(ci[i].base_oid, ci[i].base_typmod);
        /* From the pg.type cdc-apply reads too: both sides choose alike. */
        r->cols[i].bin = ci[i].enum_labels ? CDC_BIN_NONE
                                           : cdc_pgtype_bin_kind(&r->cols[i].type, ci[i].pg_type);
        size_t nl = json_is_array(ci[i].enum_labels) ? json_array_size(ci[i].enum_labels) : 0;
        if (nl > 0) {
            r->cols[i].labels = cdc_xcalloc(nl, sizeof *r->cols[i].labels);
            for (size_t l = 0; l < nl; l++) {
                const char *s = json_string_value(json_array_get(ci[i].enum_labels, l));
                r->cols[i].labels[r->cols[i].nlabels++] = cdc_xstrdup(s ? s : "");
            }
        }
        if (ci[i].key)
            r->key_idx[r->nkey++] = i;
    }

    char nsp[256], rel[256];
    relcache_avro_name(r->nspname, nsp, sizeof nsp);
    relcache_avro_name(r->relname, rel, sizeof rel);

    json_t *fields = json_array(), *keynames = json_array();
    for (int i = 0; i < ncols; i++)
        json_array_append_new(fields, field_json(&r->cols[i], &ci[i], true));
    /*
     * pg.key lists the key in the index's column order (what a target's
     * primary key is created with); the Key record keeps the table's
     * column order, which its bytes, and so the partitions, depend on.
     */
    int *order = cdc_xcalloc((size_t)r->nkey + 1, sizeof *order);
    bool placed = r->nkey > 0;
    for (int k = 0; k < r->nkey; k++) {
        order[k] = r->key_idx[k];
        placed &= ci[order[k]].key_pos > 0;
    }
    for (int k = 1; placed && k < r->nkey; k++)
        for (int j = k; j > 0 && ci[order[j - 1]].key_pos > ci[order[j]].key_pos; j--) {
            int tmp = order[j];
            order[j] = order[j - 1];
            order[j - 1] = tmp;
        }
    for (int k = 0; k < r->nkey; k++)
        json_array_append_new(keynames, json_string(ci[order[k]].name));
    free(order);
    row = json_object();
    json_object_set_new(row, "type", json_string("record"));
    json_object_set_new(row, "name", json_string("Value"));
    json_object_set_new(row, "pg.schema", json_string(r->nspname));
    json_object_set_new(row, "pg.table", json_string(r->relname));
    json_object_set_new(row, "pg.key", keynames);
    json_object_set_new(row, "fields", fields);

    if (r->nkey > 0) {
        json_t *kf = json_array();
        for (int k = 0; k < r->nkey; k++) {
            int i = r->key_idx[k];
            json_array_append_new(kf, field_json(&r->cols[i], &ci[i], false));
        }
        key = json_object();
        json_object_set_new(key, "type", json_string("record"));
        json_object_set_new(key, "name", json_string("Key"));
        json_object_set_new(key, "fields", kf);
    }

    json_error_t jerr;
    env = json_loads(CDC_ENVELOPE_AVSC, JSON_PRESERVE_ORDER, &jerr);
    source = json_loads(CDC_SOURCE_AVSC, JSON_PRESERVE_ORDER, &jerr);
    if (!env || !source) {
        snprintf(errstr, errstr_size, "built-in schema template is invalid: %s", jerr.text);
        goto done;
    }
    fill_template(env, row, source);

    /* Version tag over everything the fingerprint does not see. */
    json_t *tag = json_pack("[O O]", row, key ? key : json_null());
    tag_text = json_dumps(tag, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(tag);
    char hex[17];
    cdc_fingerprint_hex(cdc_crc64_avro(tag_text, strlen(tag_text)), hex);
    char ns[600];
    snprintf(ns, sizeof ns, "cdc.%s.%s.v%s", nsp, rel, hex);
    /*
     * The key's own tag covers only the key record: the key bytes (and so
     * the partition) of a row must not change when a column is added to the
     * table, or one key's history would be split across partitions.
     */
    char kns[600] = "";
    if (key) {
        char *ktext = json_dumps(key, JSON_COMPACT | JSON_SORT_KEYS);
        char khex[17];
        cdc_fingerprint_hex(cdc_crc64_avro(ktext, strlen(ktext)), khex);
        free(ktext);
        snprintf(kns, sizeof kns, "cdc.%s.%s.k%s", nsp, rel, khex);
    }

    /* Put "namespace" right after "name" for readability. */
    json_t *env2 = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(env, k, v)
    {
        json_object_set(env2, k, v);
        if (strcmp(k, "name") == 0)
            json_object_set_new(env2, "namespace", json_string(ns));
    }
    json_decref(env);
    env = env2;
    r->value_schema = dump(env);
    if (key) {
        json_t *key2 = json_object();
        json_object_foreach(key, k, v)
        {
            json_object_set(key2, k, v);
            if (strcmp(k, "name") == 0)
                json_object_set_new(key2, "namespace", json_string(kns));
        }
        json_decref(key);
        key = key2;
        r->key_schema = dump(key);
    }
    if (check_avro(r->value_schema, errstr, errstr_size) != 0)
        goto done;
    if (cdc_avro_fingerprint(r->value_schema, &r->value_fp, errstr, errstr_size) != 0)
        goto done;
    if (r->key_schema) {
        if (check_avro(r->key_schema, errstr, errstr_size) != 0)
            goto done;
        if (cdc_avro_fingerprint(r->key_schema, &r->key_fp, errstr, errstr_size) != 0)
            goto done;
    }
    rc = 0;
done:
    free(tag_text);
    json_decref(row);
    json_decref(key);
    json_decref(env);
    json_decref(source);
    return rc;
}

/* ---- catalog lookups ---- */

static const char *TABLE_SQL =
    /* Each column's place in the primary key and in the replica identity
     * index (NULL: not in it); key columns only: an index's INCLUDE columns
     * are not part of its key. */
    "SELECT a.attname, a.attnotnull, "
    "  pg_catalog.array_position((i.indkey::int2[])[0:i.indnkeyatts - 1], a.attnum), "
    "  pg_catalog.array_position((ri.indkey::int2[])[0:ri.indnkeyatts - 1], a.attnum) "
    "FROM pg_catalog.pg_attribute a "
    "LEFT JOIN pg_catalog.pg_index i ON i.indrelid = a.attrelid AND i.indisprimary "
    "LEFT JOIN pg_catalog.pg_index ri ON ri.indrelid = a.attrelid AND ri.indisreplident "
    "WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped";

static const char *TYPES_SQL =
    "SELECT c.ord, t.typtype, b.oid, b.mod, pg_catalog.format_type(b.oid, b.mod), "
    "  CASE WHEN t.typtype = 'd' THEN pg_catalog.format_type(c.oid, c.mod) END, "
    "  (SELECT pg_catalog.json_agg(e.enumlabel ORDER BY e.enumsortorder) "
    "     FROM pg_catalog.pg_enum e WHERE e.enumtypid = b.oid) "
    "FROM unnest($1::oid[], $2::int4[]) WITH ORDINALITY AS c(oid, mod, ord) "
    "LEFT JOIN pg_catalog.pg_type t ON t.oid = c.oid "
    /* The base type: a domain over a domain is followed down to the end. */
    "CROSS JOIN LATERAL ("
    "  WITH RECURSIVE ch(oid, mod, depth) AS ("
    "    SELECT c.oid, c.mod, 0 "
    "    UNION ALL "
    "    SELECT d.typbasetype, CASE WHEN d.typtypmod <> -1 THEN d.typtypmod ELSE ch.mod END, "
    "      ch.depth + 1 "
    "    FROM ch JOIN pg_catalog.pg_type d ON d.oid = ch.oid AND d.typtype = 'd') "
    "  SELECT ch.oid, ch.mod FROM ch ORDER BY ch.depth DESC LIMIT 1) AS b(oid, mod) "
    "ORDER BY c.ord";

relation *relcache_update(relcache *rc, const pgo_msg *m, PGconn *sql, const char *topic_prefix,
                          bool *retriable, char *errstr, size_t errstr_size)
{
    relation *r = cdc_xcalloc(1, sizeof *r);
    rel_colinfo *ci = cdc_xcalloc(m->ncols ? m->ncols : 1, sizeof *ci);
    json_t **labels = cdc_xcalloc(m->ncols ? m->ncols : 1, sizeof *labels);
    PGresult *tres = NULL, *yres = NULL;
    cdc_buf oids, mods, topic;
    cdc_buf_init(&oids);
    cdc_buf_init(&mods);
    cdc_buf_init(&topic);
    *retriable = false;

    r->relid = m->relid;
    /* pgoutput sends an empty namespace for pg_catalog. */
    r->nspname = cdc_xstrdup(m->nspname[0] ? m->nspname : "pg_catalog");
    r->relname = cdc_xstrdup(m->relname);
    r->replident = m->replident;

    char relid[16];
    snprintf(relid, sizeof relid, "%u", m->relid);
    const char *p1[1] = {relid};
    tres = PQexecParams(sql, TABLE_SQL, 1, NULL, p1, NULL, NULL, 0);
    if (PQresultStatus(tres) != PGRES_TUPLES_OK)
        goto sqlfail;

    cdc_buf_putc(&oids, '{');
    cdc_buf_putc(&mods, '{');
    for (int i = 0; i < m->ncols; i++) {
        cdc_buf_printf(&oids, "%s%u", i ? "," : "", m->cols[i].type_oid);
        cdc_buf_printf(&mods, "%s%d", i ? "," : "", m->cols[i].typmod);
    }
    cdc_buf_putc(&oids, '}');
    cdc_buf_putc(&mods, '}');
    const char *p2[2] = {cdc_buf_cstr(&oids), cdc_buf_cstr(&mods)};
    yres = PQexecParams(sql, TYPES_SQL, 2, NULL, p2, NULL, NULL, 0);
    if (PQresultStatus(yres) != PGRES_TUPLES_OK)
        goto sqlfail;
    if (PQntuples(yres) != m->ncols) {
        snprintf(errstr, errstr_size, "type lookup for %s.%s returned %d rows for %d columns",
                 r->nspname, r->relname, PQntuples(yres), m->ncols);
        goto fail;
    }

    /*
     * Under REPLICA IDENTITY FULL pgoutput flags every column as key; the
     * event key is then the primary key, or none (null key) without one.
     */
    bool use_pk = m->replident == 'f' || m->replident == 'n';
    for (int i = 0; i < m->ncols; i++) {
        rel_colinfo *c = &ci[i];
        c->name = m->cols[i].name;
        c->type_oid = m->cols[i].type_oid;
        c->typmod = m->cols[i].typmod;
        c->key = !use_pk && (m->cols[i].flags & 1);
        for (int t = 0; t < PQntuples(tres); t++) {
            if (strcmp(PQgetvalue(tres, t, 0), c->name) == 0) {
                c->notnull = PQgetvalue(tres, t, 1)[0] == 't';
                if (use_pk)
                    c->key = !PQgetisnull(tres, t, 2);
                /* The identity is the replica identity index (i), else the
                 * primary key. */
                int col = m->replident == 'i' ? 3 : 2;
                c->key_pos = PQgetisnull(tres, t, col) ? 0 : atoi(PQgetvalue(tres, t, col));
            }
        }
        if (PQgetisnull(yres, i, 1)) {
            /* The type was dropped since this WAL was written: keep the text. */
            c->base_oid = CDC_OID_TEXT;
            c->base_typmod = -1;
            c->pg_type = "text";
            cdc_warn("%s.%s column %s: type %u no longer exists; sending its text form", r->nspname,
                     r->relname, c->name, c->type_oid);
            continue;
        }
        c->base_oid = (uint32_t)strtoul(PQgetvalue(yres, i, 2), NULL, 10);
        c->base_typmod = (int32_t)strtol(PQgetvalue(yres, i, 3), NULL, 10);
        c->pg_type = PQgetvalue(yres, i, 4);
        c->domain = PQgetisnull(yres, i, 5) ? NULL : PQgetvalue(yres, i, 5);
        if (!PQgetisnull(yres, i, 6)) {
            json_error_t jerr;
            labels[i] = json_loads(PQgetvalue(yres, i, 6), 0, &jerr);
            c->enum_labels = labels[i];
        }
    }

    if (relcache_build(r, ci, m->ncols, errstr, errstr_size) != 0)
        goto fail;
    cdc_topic_for_table(&topic, topic_prefix, r->nspname, r->relname);
    r->topic = cdc_xstrdup(cdc_buf_cstr(&topic));
    put(rc, r);
    goto done;

sqlfail:
    snprintf(errstr, errstr_size, "catalog lookup for relation %s.%s failed: %s", m->nspname,
             m->relname, PQerrorMessage(sql));
    *retriable = true;
fail:
    relation_free(r);
    r = NULL;
done:
    for (int i = 0; i < m->ncols; i++)
        json_decref(labels[i]);
    free(labels);
    free(ci);
    PQclear(tres);
    PQclear(yres);
    cdc_buf_free(&oids);
    cdc_buf_free(&mods);
    cdc_buf_free(&topic);
    return r;
}
