/*
 * SQL text generation: identifier quoting, the type-name grammar (with
 * injection attempts), the exact text of every generator on a small schema,
 * hostile names throughout, and COPY text escaping. No server needed: the
 * strings are compared exactly.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sqlgen.h"

/* ---- schemas ---- */

typedef struct col {
    const char *name;
    const char *avro;
    const char *pg_type;
    bool key;
    bool notnull;
    const char *enum_json; /* labels or NULL */
} col;

/* An envelope like capture/relcache.c writes, reduced to what the parser reads. */
static cdc_table_schema *schema_of(const char *nsp, const char *rel, const col *cols, int n)
{
    json_t *fields = json_array(), *keys = json_array();
    for (int i = 0; i < n; i++) {
        char avro_name[64];
        snprintf(avro_name, sizeof avro_name, "f%d", i);
        json_t *f = json_pack("{s:s, s:[s,s], s:n, s:s, s:s, s:b}", "name", avro_name, "type",
                              "null", cols[i].avro, "default", "pg.name", cols[i].name, "pg.type",
                              cols[i].pg_type, "pg.nullable", !cols[i].key && !cols[i].notnull);
        if (cols[i].enum_json) {
            json_error_t jerr;
            json_object_set_new(f, "pg.enum", json_loads(cols[i].enum_json, 0, &jerr));
        }
        json_array_append_new(fields, f);
        if (cols[i].key)
            json_array_append_new(keys, json_string(cols[i].name));
    }
    json_t *row = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o}", "type", "record", "name", "Value",
                            "pg.schema", nsp, "pg.table", rel, "pg.key", keys, "fields", fields);
    json_t *source = json_pack("{s:s, s:s, s:[]}", "type", "record", "name", "Source", "fields");
    json_t *env = json_pack(
        "{s:s, s:s, s:s, s:["
        "{s:s, s:[s,o], s:n}, {s:s, s:[s,s], s:n}, {s:s, s:o}, {s:s, s:s},"
        "{s:s, s:[s,s], s:n}, {s:s, s:s}, {s:s, s:s}, {s:s, s:{s:s, s:s}, s:[]}]}",
        "type", "record", "name", "Envelope", "namespace", "cdc.t.v0", "fields", "name", "before",
        "type", "null", row, "default", "name", "after", "type", "null", "Value", "default",
        "name", "source", "type", source, "name", "op", "type", "string", "name", "ts_ms", "type",
        "null", "long", "default", "name", "commit_lsn", "type", "long", "name", "ordinal", "type",
        "long", "name", "unchanged_toast", "type", "type", "array", "items", "string", "default");
    cr_assert_not_null(env);
    char *text = json_dumps(env, JSON_COMPACT | JSON_PRESERVE_ORDER);
    char err[256] = "";
    cdc_table_schema *s = cdc_table_schema_parse(text, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    free(text);
    json_decref(env);
    return s;
}

static const col PAY[] = {
    {"id", "long", "bigint", true, true, NULL},
    {"Amount", "string", "numeric(18,2)", false, true, NULL},
    {"note text", "string", "text", false, false, NULL},
    {"state", "string", "public.pay_state", false, false, "[\"new\",\"it's\",\"back\\\\slash\"]"},
};

static cdc_table_schema *payments(void)
{
    return schema_of("public", "Payments", PAY, 4);
}

/* Run a generator into a fresh buffer and compare the whole text. */
#define EXPECT_SQL(call, expected)                                                                 \
    do {                                                                                           \
        cdc_buf out_ = {0};                                                                        \
        cdc_buf *out = &out_;                                                                      \
        call;                                                                                      \
        cr_expect_str_eq(cdc_buf_cstr(out), (expected));                                           \
        cdc_buf_free(out);                                                                         \
    } while (0)

/* ---- identifiers ---- */

static void expect_ident(const char *in, const char *quoted)
{
    cdc_buf b = {0};
    sql_ident(&b, in);
    cr_expect_str_eq(cdc_buf_cstr(&b), quoted);
    cdc_buf_free(&b);
}

Test(sqlgen, identifiers_are_quoted_like_PQescapeIdentifier)
{
    expect_ident("id", "\"id\"");
    expect_ident("Amount", "\"Amount\"");
    expect_ident("note text", "\"note text\"");
    expect_ident("select", "\"select\"");
    expect_ident("a\"b", "\"a\"\"b\"");
    expect_ident("\"", "\"\"\"\"");
    expect_ident("x\"; DROP TABLE t; --", "\"x\"\"; DROP TABLE t; --\"");
    expect_ident("Größe €", "\"Größe €\"");
    expect_ident("", "\"\"");
}

Test(sqlgen, qualified_name_quotes_both_parts)
{
    EXPECT_SQL(sql_qualified(out, "My Schema", "a.b\"c"), "\"My Schema\".\"a.b\"\"c\"");
}

/* ---- type names ---- */

Test(sqlgen, type_grammar_accepts_format_type_output)
{
    static const char *ok[] = {
        "integer",
        "bigint",
        "text",
        "bytea",
        "jsonb",
        "bpchar",
        "\"char\"",
        "\"char\"[]",
        "double precision",
        "character varying",
        "character varying(10)",
        "character varying(10)[]",
        "character(1)",
        "numeric",
        "numeric(18,2)",
        "numeric(5,-2)",
        "bit(3)",
        "bit varying(3)",
        "time without time zone",
        "time(3) with time zone",
        "timestamp with time zone",
        "timestamp(6) without time zone",
        "interval",
        "interval(3)",
        "interval year to month",
        "interval day to second(3)",
        "integer[]",
        "text[][]",
        "public.mood",
        "public.mood[]",
        "\"My Type\"",
        "\"My Schema\".\"My Type\"[]",
        "\"we\"\"ird\"",
        "\"semi;colon -- not a comment /* */\"",
        "\"Größe\"",
        "geometry(Point,4326)",
        "_int4",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        cr_expect(sql_type_ok(ok[i]), "rejected %s", ok[i]);
}

Test(sqlgen, type_grammar_rejects_injection_and_stray_punctuation)
{
    static const char *bad[] = {
        "",
        "int); DROP TABLE x; --",
        "int; DROP TABLE x",
        "integer -- comment",
        "integer/* c */",
        "integer /* c */",
        "integer DEFAULT 0",
        "integer NOT NULL",
        "integer PRIMARY KEY",
        "integer REFERENCES other",
        "integer CHECK(false)",
        "integer GENERATED ALWAYS AS IDENTITY",
        "text COLLATE \"C\"",
        "\"unterminated",
        "\"\"",
        "\"a\"\"",
        "numeric(18,2",
        "numeric18,2)",
        "numeric(18,2))",
        "numeric(18, 2)",
        "numeric()",
        "numeric(18,)",
        "numeric(1)(2)",
        "numeric(1;2)",
        "integer[",
        "integer[3]",
        "integer[]x",
        " integer",
        "integer ",
        "double  precision",
        "double\tprecision",
        "integer\n",
        "a.b.c",
        ".a",
        "a.",
        "a .b",
        "E'x'",
        "U&\"x\"",
        "$1",
        "integer::text",
        "int4,int8",
        "Größe",
        "\"ctl\x01" "char\"",
        "1integer",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_not(sql_type_ok(bad[i]), "accepted %s", bad[i]);
    cr_expect_not(sql_type_ok(NULL));
}

/* ---- DDL ---- */

Test(sqlgen, create_table_has_schema_enum_types_not_null_and_primary_key)
{
    cdc_table_schema *s = payments();
    char err[256] = "";
    EXPECT_SQL(cr_assert_eq(sql_create_table(out, s, true, err, sizeof err), 0, "%s", err),
               "CREATE SCHEMA IF NOT EXISTS \"public\";\n"
               "CREATE SCHEMA IF NOT EXISTS public;\n"
               "DO $cdc$BEGIN CREATE TYPE public.pay_state AS ENUM "
               "(E'new', E'it''s', E'back\\\\slash'); "
               "EXCEPTION WHEN duplicate_object THEN NULL; END$cdc$;\n"
               "CREATE TABLE IF NOT EXISTS \"public\".\"Payments\" ("
               "\"id\" bigint NOT NULL, \"Amount\" numeric(18,2) NOT NULL, \"note text\" text, "
               "\"state\" public.pay_state, PRIMARY KEY (\"id\"));\n");
    cdc_table_schema_free(s);
}

Test(sqlgen, create_table_quotes_hostile_names)
{
    static const col cols[] = {
        {"select", "long", "bigint", true, true, NULL},
        {"a\"b", "string", "text", true, true, NULL},
        {"Größe €", "string", "text", false, false, NULL},
    };
    cdc_table_schema *s = schema_of("x\"; DROP SCHEMA y; --", "Tab le", cols, 3);
    char err[256] = "";
    EXPECT_SQL(cr_assert_eq(sql_create_table(out, s, true, err, sizeof err), 0, "%s", err),
               "CREATE SCHEMA IF NOT EXISTS \"x\"\"; DROP SCHEMA y; --\";\n"
               "CREATE TABLE IF NOT EXISTS \"x\"\"; DROP SCHEMA y; --\".\"Tab le\" ("
               "\"select\" bigint NOT NULL, \"a\"\"b\" text NOT NULL, \"Größe €\" text, "
               "PRIMARY KEY (\"select\", \"a\"\"b\"));\n");
    cdc_table_schema_free(s);
}

/* A table for a load: the same table, its primary key added after the rows. */
Test(sqlgen, create_table_for_a_load_leaves_the_key_to_add_primary_key)
{
    static const col cols[] = {
        {"select", "long", "bigint", true, true, NULL},
        {"a\"b", "string", "text", true, true, NULL},
        {"v", "string", "text", false, false, NULL},
    };
    cdc_table_schema *s = schema_of("x\"y", "Tab le", cols, 3);
    char err[256] = "";
    EXPECT_SQL(cr_assert_eq(sql_create_table(out, s, false, err, sizeof err), 0, "%s", err),
               "CREATE SCHEMA IF NOT EXISTS \"x\"\"y\";\n"
               "CREATE TABLE IF NOT EXISTS \"x\"\"y\".\"Tab le\" ("
               "\"select\" bigint NOT NULL, \"a\"\"b\" text NOT NULL, \"v\" text);\n");
    const char *keys[] = {"select", "a\"b"};
    EXPECT_SQL(sql_add_primary_key(out, "x\"y", "Tab le", keys, 2),
               "ALTER TABLE \"x\"\"y\".\"Tab le\" ADD PRIMARY KEY (\"select\", \"a\"\"b\")");
    cdc_table_schema_free(s);
}

Test(sqlgen, create_table_of_keyless_table_has_no_primary_key)
{
    static const col cols[] = {{"a", "string", "text", false, false, NULL}};
    cdc_table_schema *s = schema_of("public", "log", cols, 1);
    char err[256] = "";
    EXPECT_SQL(cr_assert_eq(sql_create_table(out, s, true, err, sizeof err), 0, "%s", err),
               "CREATE SCHEMA IF NOT EXISTS \"public\";\n"
               "CREATE TABLE IF NOT EXISTS \"public\".\"log\" (\"a\" text);\n");
    cdc_table_schema_free(s);
}

Test(sqlgen, unsafe_type_is_refused_and_nothing_is_appended)
{
    static const col cols[] = {
        {"id", "long", "bigint", true, true, NULL},
        {"x", "string", "int); DROP TABLE t; --", false, false, NULL},
    };
    cdc_table_schema *s = schema_of("public", "t", cols, 2);
    char err[256] = "";
    cdc_buf out = {0};
    cdc_buf_puts(&out, "kept");
    cr_expect_eq(sql_create_table(&out, s, true, err, sizeof err), -1);
    cr_expect(strstr(err, "\"x\"") != NULL, "%s", err);
    cr_expect_eq(sql_add_column(&out, s, 1, err, sizeof err), -1);
    cr_expect_eq(sql_create_stage(&out, s, "stage", err, sizeof err), -1);
    cr_expect_str_eq(cdc_buf_cstr(&out), "kept");
    cdc_buf_free(&out);
    cdc_table_schema_free(s);
}

Test(sqlgen, enum_used_twice_is_created_once_and_enum_arrays_are_skipped)
{
    static const col cols[] = {
        {"id", "long", "bigint", true, true, NULL},
        {"a", "string", "mood", false, false, "[\"ok\"]"},
        {"b", "string", "mood", false, false, "[\"ok\"]"},
        {"c", "string", "mood[]", false, false, "[\"ok\"]"},
    };
    cdc_table_schema *s = schema_of("public", "t", cols, 4);
    char err[256] = "";
    EXPECT_SQL(cr_assert_eq(sql_create_table(out, s, true, err, sizeof err), 0, "%s", err),
               "CREATE SCHEMA IF NOT EXISTS \"public\";\n"
               "DO $cdc$BEGIN CREATE TYPE mood AS ENUM (E'ok'); "
               "EXCEPTION WHEN duplicate_object THEN NULL; END$cdc$;\n"
               "CREATE TABLE IF NOT EXISTS \"public\".\"t\" (\"id\" bigint NOT NULL, \"a\" mood, "
               "\"b\" mood, \"c\" mood[], PRIMARY KEY (\"id\"));\n");
    cdc_table_schema_free(s);
}

Test(sqlgen, dollar_quote_tag_never_occurs_in_the_body)
{
    static const col cols[] = {
        {"id", "long", "bigint", true, true, NULL},
        {"a", "string", "\"$cdc$\"", false, false, "[\"$cdc1$\", \"x$cdc2$\"]"},
    };
    cdc_table_schema *s = schema_of("public", "t", cols, 2);
    char err[256] = "";
    EXPECT_SQL(cr_assert_eq(sql_create_table(out, s, true, err, sizeof err), 0, "%s", err),
               "CREATE SCHEMA IF NOT EXISTS \"public\";\n"
               "DO $cdc3$BEGIN CREATE TYPE \"$cdc$\" AS ENUM (E'$cdc1$', E'x$cdc2$'); "
               "EXCEPTION WHEN duplicate_object THEN NULL; END$cdc3$;\n"
               "CREATE TABLE IF NOT EXISTS \"public\".\"t\" (\"id\" bigint NOT NULL, "
               "\"a\" \"$cdc$\", PRIMARY KEY (\"id\"));\n");
    cdc_table_schema_free(s);
}

Test(sqlgen, create_enum_is_a_plain_create_type_with_escaped_labels)
{
    cdc_table_schema *s = payments();
    char err[256] = "";
    EXPECT_SQL(cr_assert_eq(sql_create_enum(out, &s->fields[3], err, sizeof err), 0, "%s", err),
               "CREATE SCHEMA IF NOT EXISTS public;\n"
               "CREATE TYPE public.pay_state AS ENUM (E'new', E'it''s', E'back\\\\slash');\n");
    cdc_table_schema_free(s);
}

Test(sqlgen, create_enum_quoted_schema_and_labels_with_quotes)
{
    static const col cols[] = {
        {"a", "string", "\"My Schema\".\"Mood\"", false, false, "[\"'; DROP TYPE x; --\", \"\\\\'\"]"},
    };
    cdc_table_schema *s = schema_of("public", "t", cols, 1);
    char err[256] = "";
    EXPECT_SQL(cr_assert_eq(sql_create_enum(out, &s->fields[0], err, sizeof err), 0, "%s", err),
               "CREATE SCHEMA IF NOT EXISTS \"My Schema\";\n"
               "CREATE TYPE \"My Schema\".\"Mood\" AS ENUM (E'''; DROP TYPE x; --', E'\\\\''');\n");
    cdc_table_schema_free(s);
}

Test(sqlgen, create_enum_refuses_what_is_not_an_enum)
{
    static const col cols[] = {
        {"a", "string", "text", false, false, NULL},
        {"b", "string", "mood[]", false, false, "[\"x\"]"},
        {"c", "string", "mood", false, false, "{\"x\":1}"},
        {"d", "string", "mood", false, false, "[1]"},
        {"e", "string", "mood; DROP", false, false, "[\"x\"]"},
    };
    cdc_table_schema *s = schema_of("public", "t", cols, 5);
    char err[256];
    cdc_buf out = {0};
    for (int i = 0; i < 5; i++) {
        err[0] = '\0';
        cr_expect_eq(sql_create_enum(&out, &s->fields[i], err, sizeof err), -1, "field %d", i);
        cr_expect_neq(err[0], '\0');
    }
    cr_expect_eq(out.len, 0);
    cdc_buf_free(&out);
    cdc_table_schema_free(s);
}

Test(sqlgen, enum_labels_and_added_label_are_quoted)
{
    static const col cols[] = {
        {"a", "string", "\"My Schema\".\"Mood\"", false, false, "[\"ok\", \"it's\", \"b\\\\s\"]"},
        {"b", "string", "mood[]", false, false, "[\"x\"]"},
        {"c", "string", "mood; DROP", false, false, "[\"x\"]"},
    };
    cdc_table_schema *s = schema_of("public", "t", cols, 3);
    char err[256] = "";
    char **l = sql_enum_labels(&s->fields[0], err, sizeof err);
    cr_assert_not_null(l, "%s", err);
    cr_assert_str_eq(l[0], "ok");
    cr_assert_str_eq(l[1], "it's");
    cr_assert_str_eq(l[2], "b\\s");
    cr_assert_null(l[3]);
    cdc_buf out = {0};
    sql_add_enum_label(&out, &s->fields[0], l[1], l[2], false);
    cr_assert_str_eq(cdc_buf_cstr(&out), "ALTER TYPE \"My Schema\".\"Mood\" ADD VALUE IF NOT EXISTS "
                                         "E'it''s' BEFORE E'b\\\\s'");
    cdc_buf_reset(&out);
    sql_add_enum_label(&out, &s->fields[0], l[2], NULL, true);
    cr_assert_str_eq(cdc_buf_cstr(&out),
                     "ALTER TYPE \"My Schema\".\"Mood\" ADD VALUE IF NOT EXISTS E'b\\\\s'");
    sql_free_labels(l);
    /* An array of enums and an unsafe type name have no label list to sync. */
    cr_expect_null(sql_enum_labels(&s->fields[1], err, sizeof err));
    cr_expect_null(sql_enum_labels(&s->fields[2], err, sizeof err));
    cdc_buf_free(&out);
    cdc_table_schema_free(s);
}

Test(sqlgen, add_column_has_no_not_null_and_creates_its_enum)
{
    cdc_table_schema *s = payments();
    char err[256] = "";
    EXPECT_SQL(cr_assert_eq(sql_add_column(out, s, 1, err, sizeof err), 0, "%s", err),
               "ALTER TABLE \"public\".\"Payments\" ADD COLUMN IF NOT EXISTS \"Amount\" "
               "numeric(18,2);\n");
    EXPECT_SQL(cr_assert_eq(sql_add_column(out, s, 3, err, sizeof err), 0, "%s", err),
               "CREATE SCHEMA IF NOT EXISTS public;\n"
               "DO $cdc$BEGIN CREATE TYPE public.pay_state AS ENUM "
               "(E'new', E'it''s', E'back\\\\slash'); "
               "EXCEPTION WHEN duplicate_object THEN NULL; END$cdc$;\n"
               "ALTER TABLE \"public\".\"Payments\" ADD COLUMN IF NOT EXISTS \"state\" "
               "public.pay_state;\n");
    cdc_buf out = {0};
    cr_expect_eq(sql_add_column(&out, s, 4, err, sizeof err), -1);
    cr_expect_eq(sql_add_column(&out, s, -1, err, sizeof err), -1);
    cdc_buf_free(&out);
    cdc_table_schema_free(s);
}

/* ---- staging and merge ---- */

Test(sqlgen, stage_is_a_nullable_temp_copy_with_op_and_keep)
{
    cdc_table_schema *s = payments();
    char err[256] = "";
    EXPECT_SQL(cr_assert_eq(sql_create_stage(out, s, "st\"g", err, sizeof err), 0, "%s", err),
               "CREATE TEMP TABLE IF NOT EXISTS pg_temp.\"st\"\"g\" (\"id\" bigint, "
               "\"Amount\" numeric(18,2), \"note text\" text, \"state\" public.pay_state, "
               "\"__cdc_op\" \"char\", \"__cdc_keep\" text) ON COMMIT DELETE ROWS");
    EXPECT_SQL(sql_copy_stage(out, s, "st\"g"),
               "COPY pg_temp.\"st\"\"g\" (\"id\", \"Amount\", \"note text\", \"state\", "
               "\"__cdc_op\", \"__cdc_keep\") FROM STDIN");
    cdc_table_schema_free(s);
}

Test(sqlgen, stage_refuses_columns_named_like_its_own)
{
    static const col cols[] = {
        {"id", "long", "bigint", true, true, NULL},
        {"__cdc_op", "string", "text", false, false, NULL},
    };
    cdc_table_schema *s = schema_of("public", "t", cols, 2);
    char err[256] = "";
    cdc_buf out = {0};
    cr_expect_eq(sql_create_stage(&out, s, "stage", err, sizeof err), -1);
    cr_expect(strstr(err, "__cdc_op") != NULL, "%s", err);
    cr_expect_eq(out.len, 0);
    cdc_buf_free(&out);
    cdc_table_schema_free(s);
}

Test(sqlgen, merge_statements_match_on_the_key)
{
    cdc_table_schema *s = payments();
    EXPECT_SQL(sql_merge_delete(out, s, "stg"),
               "DELETE FROM \"public\".\"Payments\" AS t USING pg_temp.\"stg\" AS s "
               "WHERE s.\"__cdc_op\" = 'D' AND t.\"id\" = s.\"id\"");
    EXPECT_SQL(sql_merge_upsert(out, s, "stg"),
               "INSERT INTO \"public\".\"Payments\" (\"id\", \"Amount\", \"note text\", \"state\") "
               "SELECT \"id\", \"Amount\", \"note text\", \"state\" FROM pg_temp.\"stg\" "
               "WHERE \"__cdc_op\" = 'U' ON CONFLICT (\"id\") DO UPDATE SET "
               "\"Amount\" = EXCLUDED.\"Amount\", \"note text\" = EXCLUDED.\"note text\", "
               "\"state\" = EXCLUDED.\"state\"");
    EXPECT_SQL(sql_merge_update(out, s, "stg"),
               "UPDATE \"public\".\"Payments\" AS t SET "
               "\"Amount\" = CASE WHEN substr(s.\"__cdc_keep\", 2, 1) = '1' THEN t.\"Amount\" "
               "ELSE s.\"Amount\" END, "
               "\"note text\" = CASE WHEN substr(s.\"__cdc_keep\", 3, 1) = '1' "
               "THEN t.\"note text\" ELSE s.\"note text\" END, "
               "\"state\" = CASE WHEN substr(s.\"__cdc_keep\", 4, 1) = '1' THEN t.\"state\" "
               "ELSE s.\"state\" END "
               "FROM pg_temp.\"stg\" AS s WHERE s.\"__cdc_op\" = 'P' AND t.\"id\" = s.\"id\"");
    EXPECT_SQL(sql_truncate(out, s), "TRUNCATE TABLE \"public\".\"Payments\"");
    cdc_table_schema_free(s);
}

Test(sqlgen, replace_is_an_update_then_an_insert_of_the_missing_rows)
{
    static const col cols[] = {
        {"v \"w\"", "string", "text", false, false, NULL},
        {"k1", "long", "bigint", true, true, NULL},
        {"k2", "string", "text", true, true, NULL},
        {"n", "long", "bigint", false, false, NULL},
    };
    cdc_table_schema *s = schema_of("s", "t", cols, 4);
    EXPECT_SQL(sql_merge_replace(out, s, "x"),
               "UPDATE \"s\".\"t\" AS t SET \"v \"\"w\"\"\" = s.\"v \"\"w\"\"\", \"n\" = s.\"n\" "
               "FROM pg_temp.\"x\" AS s WHERE s.\"__cdc_op\" = 'W' "
               "AND t.\"k1\" = s.\"k1\" AND t.\"k2\" = s.\"k2\"");
    EXPECT_SQL(sql_merge_replace_missing(out, s, "x"),
               "INSERT INTO \"s\".\"t\" (\"v \"\"w\"\"\", \"k1\", \"k2\", \"n\") "
               "SELECT \"v \"\"w\"\"\", \"k1\", \"k2\", \"n\" FROM pg_temp.\"x\" "
               "WHERE \"__cdc_op\" = 'W' ON CONFLICT (\"k1\", \"k2\") DO NOTHING");
    cdc_table_schema_free(s);
    /* Key columns only: nothing to update, the insert does it all. */
    static const col keys[] = {{"k", "long", "bigint", true, true, NULL}};
    s = schema_of("s", "t", keys, 1);
    EXPECT_SQL(sql_merge_replace(out, s, "x"), "");
    EXPECT_SQL(sql_merge_replace_missing(out, s, "x"),
               "INSERT INTO \"s\".\"t\" (\"k\") SELECT \"k\" FROM pg_temp.\"x\" "
               "WHERE \"__cdc_op\" = 'W' ON CONFLICT (\"k\") DO NOTHING");
    cdc_table_schema_free(s);
}

Test(sqlgen, merge_with_composite_key_in_the_middle)
{
    static const col cols[] = {
        {"v", "string", "text", false, false, NULL},
        {"k1", "long", "bigint", true, true, NULL},
        {"k2", "string", "text", true, true, NULL},
    };
    cdc_table_schema *s = schema_of("s", "t", cols, 3);
    EXPECT_SQL(sql_merge_delete(out, s, "x"),
               "DELETE FROM \"s\".\"t\" AS t USING pg_temp.\"x\" AS s WHERE s.\"__cdc_op\" = 'D' "
               "AND t.\"k1\" = s.\"k1\" AND t.\"k2\" = s.\"k2\"");
    EXPECT_SQL(sql_merge_upsert(out, s, "x"),
               "INSERT INTO \"s\".\"t\" (\"v\", \"k1\", \"k2\") SELECT \"v\", \"k1\", \"k2\" "
               "FROM pg_temp.\"x\" WHERE \"__cdc_op\" = 'U' ON CONFLICT (\"k1\", \"k2\") "
               "DO UPDATE SET \"v\" = EXCLUDED.\"v\"");
    EXPECT_SQL(sql_merge_update(out, s, "x"),
               "UPDATE \"s\".\"t\" AS t SET \"v\" = CASE WHEN substr(s.\"__cdc_keep\", 1, 1) = '1' "
               "THEN t.\"v\" ELSE s.\"v\" END FROM pg_temp.\"x\" AS s WHERE s.\"__cdc_op\" = 'P' "
               "AND t.\"k1\" = s.\"k1\" AND t.\"k2\" = s.\"k2\"");
    cdc_table_schema_free(s);
}

Test(sqlgen, key_only_table_upsert_does_nothing_on_conflict)
{
    static const col cols[] = {{"k", "long", "bigint", true, true, NULL}};
    cdc_table_schema *s = schema_of("s", "t", cols, 1);
    EXPECT_SQL(sql_merge_upsert(out, s, "x"),
               "INSERT INTO \"s\".\"t\" (\"k\") SELECT \"k\" FROM pg_temp.\"x\" "
               "WHERE \"__cdc_op\" = 'U' ON CONFLICT (\"k\") DO NOTHING");
    EXPECT_SQL(sql_merge_update(out, s, "x"),
               "UPDATE \"s\".\"t\" AS t SET \"k\" = t.\"k\" FROM pg_temp.\"x\" AS s "
               "WHERE s.\"__cdc_op\" = 'P' AND t.\"k\" = s.\"k\"");
    cdc_table_schema_free(s);
}

Test(sqlgen, merge_of_keyless_schema_matches_nothing)
{
    static const col cols[] = {{"a", "string", "text", false, false, NULL}};
    cdc_table_schema *s = schema_of("s", "t", cols, 1);
    EXPECT_SQL(sql_merge_delete(out, s, "x"),
               "DELETE FROM \"s\".\"t\" AS t USING pg_temp.\"x\" AS s "
               "WHERE s.\"__cdc_op\" = 'D' AND false");
    EXPECT_SQL(sql_merge_upsert(out, s, "x"),
               "INSERT INTO \"s\".\"t\" (\"a\") SELECT \"a\" FROM pg_temp.\"x\" "
               "WHERE \"__cdc_op\" = 'U' AND false");
    cdc_table_schema_free(s);
}

/* ---- keyless statements ---- */

Test(sqlgen, keyless_statements_bind_every_column)
{
    static const col cols[] = {
        {"at", "string", "text", false, false, NULL},
        {"Msg", "string", "text", false, false, NULL},
    };
    cdc_table_schema *s = schema_of("audit", "log", cols, 2);
    EXPECT_SQL(sql_keyless_insert(out, s),
               "INSERT INTO \"audit\".\"log\" (\"at\", \"Msg\") VALUES ($1, $2)");
    EXPECT_SQL(sql_keyless_update(out, s),
               "UPDATE \"audit\".\"log\" SET \"at\" = $3, \"Msg\" = $4 "
               "WHERE (tableoid, ctid) = (SELECT tableoid, ctid FROM \"audit\".\"log\" "
               "WHERE \"at\" IS NOT DISTINCT FROM $1 AND \"Msg\" IS NOT DISTINCT FROM $2 LIMIT 1)");
    EXPECT_SQL(sql_keyless_delete(out, s),
               "DELETE FROM \"audit\".\"log\" "
               "WHERE (tableoid, ctid) = (SELECT tableoid, ctid FROM \"audit\".\"log\" "
               "WHERE \"at\" IS NOT DISTINCT FROM $1 AND \"Msg\" IS NOT DISTINCT FROM $2 LIMIT 1)");
    cdc_table_schema_free(s);
}

/* ---- COPY ---- */

Test(sqlgen, copy_line_escapes_delimiters_and_writes_null_as_backslash_n)
{
    const char *vals[] = {"1", "a\tb", "line1\nline2\r", "C:\\dir", NULL, "\\N", "\\.", ""};
    EXPECT_SQL(sql_copy_line(out, 8, vals, 'U', "00000000"),
               "1\ta\\tb\tline1\\nline2\\r\tC:\\\\dir\t\\N\t\\\\N\t\\\\.\t\tU\t00000000\n");
}

Test(sqlgen, copy_lines_append_and_keep_may_be_null)
{
    const char *vals[] = {"7", NULL};
    EXPECT_SQL((sql_copy_line(out, 2, vals, 'D', NULL), sql_copy_line(out, 2, vals, 'P', "01")),
               "7\t\\N\tD\t\\N\n7\t\\N\tP\t01\n");
}
