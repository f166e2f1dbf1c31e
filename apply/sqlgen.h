/*
 * SQL text for cdc-apply. Identifiers are always quoted (the same rules as
 * PQescapeIdentifier: "..." with embedded quotes doubled); values are never
 * spliced into SQL: rows travel through COPY or as bind parameters. Type
 * names come from the schema's "pg.type" (PostgreSQL's format_type output)
 * and are checked against a conservative grammar before use.
 *
 * Staging design, per target table and batch:
 *   CREATE TEMP TABLE <stage> (<every column, same type, nullable>,
 *                              "__cdc_op" "char", "__cdc_keep" text)
 *     ON COMMIT DELETE ROWS
 *   COPY <stage> FROM STDIN            (one row per reduced batch row)
 *   DELETE FROM t USING stage s WHERE s.op = 'D' AND t.key = s.key
 *   INSERT INTO t (cols) SELECT cols FROM stage WHERE op = 'U'
 *     ON CONFLICT (key) DO UPDATE SET col = EXCLUDED.col, ...
 *   UPDATE t SET col = s.col, ... FROM stage s WHERE s.op = 'W' AND t.key = s.key
 *   (only if that updated fewer rows than were staged:)
 *   INSERT INTO t (cols) SELECT cols FROM stage WHERE op = 'W'
 *     ON CONFLICT (key) DO NOTHING
 *   UPDATE t SET col = CASE WHEN substr(s.keep, i, 1) = '1' THEN t.col
 *                      ELSE s.col END, ...
 *     FROM stage s WHERE s.op = 'P' AND t.key = s.key
 * "__cdc_keep" is a string of '0'/'1', one per column, '1' meaning: keep
 * the target's value (unchanged TOASTed value).
 */
#ifndef CDC_APPLY_SQLGEN_H
#define CDC_APPLY_SQLGEN_H

#include <stdbool.h>

#include "cdc/buf.h"
#include "cdc/event.h"

/* Append "ident" quoted. */
void sql_ident(cdc_buf *out, const char *ident);
/* Append "schema"."table". */
void sql_qualified(cdc_buf *out, const char *schema, const char *table);
/* True if `t` is a safe type expression (format_type output). */
bool sql_type_ok(const char *t);

/*
 * CREATE SCHEMA IF NOT EXISTS, CREATE TYPE ... AS ENUM for every enum column
 * whose type does not exist (guarded with a DO block or a catalog check done
 * by the caller: here, statements that are safe to run when it exists), and
 * CREATE TABLE IF NOT EXISTS with the original types, NOT NULL where
 * pg.nullable is false, and PRIMARY KEY (key columns) unless `primary_key`
 * is false (a table created for a load gets it afterwards:
 * sql_add_primary_key). Appends to out. Returns 0, or -1 with errstr
 * (unsafe type name).
 */
int sql_create_table(cdc_buf *out, const cdc_table_schema *s, bool primary_key, char *errstr,
                     size_t errstr_size);
/* ALTER TABLE "schema"."table" ADD PRIMARY KEY ("col", ...): no terminator. */
void sql_add_primary_key(cdc_buf *out, const char *schema, const char *table,
                         const char *const *cols, int ncols);
/*
 * CREATE TYPE <pg_type> AS ENUM (<labels of enum_json>) for an enum field.
 * The caller checks first that the type does not exist (to_regtype).
 */
int sql_create_enum(cdc_buf *out, const cdc_field *f, char *errstr, size_t errstr_size);
/*
 * The labels of field f's enum (pg.enum, in order) as a new NULL-terminated
 * array the caller frees with sql_free_labels, or NULL (errstr) when f has no
 * usable label list or no safe plain enum type name.
 */
char **sql_enum_labels(const cdc_field *f, char *errstr, size_t errstr_size);
void sql_free_labels(char **labels);
/*
 * ALTER TYPE <f's type> ADD VALUE IF NOT EXISTS <label> BEFORE|AFTER <other>
 * (one statement, no terminator; `other` NULL = at the end).
 */
void sql_add_enum_label(cdc_buf *out, const cdc_field *f, const char *label, const char *other,
                        bool after);
/* ALTER TABLE ... ADD COLUMN IF NOT EXISTS for the field; 0 or -1 (unsafe type). */
int sql_add_column(cdc_buf *out, const cdc_table_schema *s, int field, char *errstr,
                   size_t errstr_size);
/* The staging table DDL for `s` named `stage` (a temp table). */
int sql_create_stage(cdc_buf *out, const cdc_table_schema *s, const char *stage, char *errstr,
                     size_t errstr_size);
/* COPY <stage> (cols..., "__cdc_op", "__cdc_keep") FROM STDIN */
void sql_copy_stage(cdc_buf *out, const cdc_table_schema *s, const char *stage);
/* The three merge statements (delete, upsert, partial update), separately. */
void sql_merge_delete(cdc_buf *out, const cdc_table_schema *s, const char *stage);
/* INSERT INTO table SELECT every staged row (a table waiting for its key). */
void sql_insert_stage(cdc_buf *out, const cdc_table_schema *s, const char *stage);
void sql_merge_upsert(cdc_buf *out, const cdc_table_schema *s, const char *stage);
void sql_merge_update(cdc_buf *out, const cdc_table_schema *s, const char *stage);
/* Full-row updates: the UPDATE (nothing for a table of key columns only),
 * then the insert of the rows it did not find. */
void sql_merge_replace(cdc_buf *out, const cdc_table_schema *s, const char *stage);
void sql_merge_replace_missing(cdc_buf *out, const cdc_table_schema *s, const char *stage);
/* TRUNCATE TABLE "schema"."table" */
void sql_truncate(cdc_buf *out, const cdc_table_schema *s);
/*
 * Keyless tables, one row per statement with bind parameters $1..$n:
 * INSERT (all columns), and UPDATE/DELETE of exactly one row whose every
 * column IS NOT DISTINCT FROM the old values ($1..$n old, then $n+1.. new),
 * chosen by ctid.
 */
void sql_keyless_insert(cdc_buf *out, const cdc_table_schema *s);
void sql_keyless_update(cdc_buf *out, const cdc_table_schema *s);
void sql_keyless_delete(cdc_buf *out, const cdc_table_schema *s);

/*
 * One COPY text-format line: each value escaped (backslash, tab, newline,
 * carriage return), NULL as \N, then op and keep columns. `vals` has
 * s->nfields entries, texts as NUL-terminated strings or NULL for NULL.
 */
void sql_copy_line(cdc_buf *out, int nfields, const char *const *vals, char op,
                   const char *keep);

/* COPY "schema"."table" (cols...) FROM STDIN: rows straight into the table. */
void sql_copy_table(cdc_buf *out, const cdc_table_schema *s);
/* One COPY text-format line of the table's columns only (see sql_copy_line). */
void sql_copy_row(cdc_buf *out, int nfields, const char *const *vals);

#endif
