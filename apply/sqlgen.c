/*
 * SQL text for cdc-apply (see sqlgen.h). Only identifiers and type names
 * from the schema are spliced into SQL, identifiers always quoted, type
 * names only after sql_type_ok; row values travel through COPY or bind
 * parameters. The one exception is enum labels, which are DDL constants:
 * they are written as E'...' literals with quotes and backslashes doubled,
 * which means the same text whatever standard_conforming_strings says.
 *
 * Output shapes: sql_create_table, sql_create_enum and sql_add_column
 * produce scripts (one or more statements, each ended by ";\n", for
 * PQexec); every other
 * generator produces one statement without a terminator (PQexecParams,
 * PQprepare). The staging table is always named pg_temp."<stage>" so a
 * permanent table of the same name on the search_path is never touched.
 */
#include "sqlgen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define OP_COL "__cdc_op"
#define KEEP_COL "__cdc_keep"

void sql_ident(cdc_buf *out, const char *ident)
{
    cdc_buf_putc(out, '"');
    for (const char *p = ident; *p; p++) {
        if (*p == '"')
            cdc_buf_putc(out, '"');
        cdc_buf_putc(out, (uint8_t)*p);
    }
    cdc_buf_putc(out, '"');
}

void sql_qualified(cdc_buf *out, const char *schema, const char *table)
{
    sql_ident(out, schema);
    cdc_buf_putc(out, '.');
    sql_ident(out, table);
}

/* ---- type names ---- */

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* A plain identifier: [A-Za-z_][A-Za-z0-9_]* (format_type quotes anything else). */
static bool scan_plain(const char **p)
{
    const char *s = *p;
    if (!is_alpha(*s))
        return false;
    while (is_alpha(*s) || is_digit(*s))
        s++;
    *p = s;
    return true;
}

/*
 * A plain or a double-quoted identifier. Inside quotes everything but a
 * lone '"' is data ("a;b" is a legal type name); control characters are
 * refused since format_type never needs them and they only hide text.
 */
static bool scan_ident(const char **p)
{
    const char *s = *p;
    if (*s != '"')
        return scan_plain(p);
    for (s++;; s++) {
        if (*s == '\0' || (unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
        if (*s == '"' && s[1] == '"')
            s++;
        else if (*s == '"')
            break;
    }
    if (s == *p + 1)
        return false; /* "" is not an identifier */
    *p = s + 1;
    return true;
}

/* Type modifiers: (item[,item]...), item a signed integer or a plain word. */
static bool scan_typmod(const char **p)
{
    const char *s = *p + 1;
    for (;;) {
        if (*s == '-')
            s++;
        if (is_digit(*s)) {
            while (is_digit(*s))
                s++;
        } else if (!scan_plain(&s)) {
            return false;
        }
        if (*s == ')')
            break;
        if (*s++ != ',')
            return false;
    }
    *p = s + 1;
    return true;
}

/*
 * The words format_type writes after a type name. A whitelist rather than
 * any word, so DEFAULT, COLLATE, REFERENCES, CHECK, NOT NULL... can never
 * ride along into a column definition.
 */
static bool trailing_word(const char *w, size_t n)
{
    static const char *const words[] = {"varying", "precision", "with",   "without", "time",
                                        "zone",    "year",      "month",  "day",     "hour",
                                        "minute",  "second",    "to"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strlen(words[i]) == n && memcmp(words[i], w, n) == 0)
            return true;
    return false;
}

/*
 * Grammar (format_type output): name ['.' name] then any of ' word' and at
 * most one '(typmod)', then any number of "[]". Single spaces only, no
 * other punctuation.
 */
bool sql_type_ok(const char *t)
{
    const char *p = t;
    bool mods = false;
    if (!t || !scan_ident(&p))
        return false;
    if (*p == '.') {
        p++;
        if (!scan_ident(&p))
            return false;
    }
    for (;;) {
        if (*p == '(' && !mods) {
            if (!scan_typmod(&p))
                return false;
            mods = true;
        } else if (*p == ' ') {
            const char *w = ++p;
            if (!scan_plain(&p) || !trailing_word(w, (size_t)(p - w)))
                return false;
        } else {
            break;
        }
    }
    while (p[0] == '[' && p[1] == ']')
        p += 2;
    return *p == '\0';
}

static int check_type(const cdc_table_schema *s, int i, char *errstr, size_t errstr_size)
{
    if (sql_type_ok(s->fields[i].pg_type))
        return 0;
    snprintf(errstr, errstr_size, "%s.%s column \"%s\": unsafe type name \"%s\"", s->schema_name,
             s->table_name, s->fields[i].pg_name, s->fields[i].pg_type);
    return -1;
}

static bool reserved_name(const char *name)
{
    return strcmp(name, OP_COL) == 0 || strcmp(name, KEEP_COL) == 0;
}

/* ---- enums ---- */

/* Append `s` as E'...': '' for a quote, \\ for a backslash, nothing else special. */
static void literal(cdc_buf *out, const char *s)
{
    cdc_buf_puts(out, "E'");
    for (; *s; s++) {
        if (*s == '\'' || *s == '\\')
            cdc_buf_putc(out, (uint8_t)*s);
        cdc_buf_putc(out, (uint8_t)*s);
    }
    cdc_buf_putc(out, '\'');
}

/* Length of the schema part of a (safe) type name, 0 when unqualified. */
static size_t type_schema_len(const char *t)
{
    const char *p = t;
    return scan_ident(&p) && *p == '.' ? (size_t)(p - t) : 0;
}

/*
 * The DDL of the enum of field f:
 *   CREATE SCHEMA IF NOT EXISTS <the type's schema>;   (qualified names only)
 *   CREATE TYPE <t> AS ENUM (<labels>);
 * `guarded` wraps the CREATE TYPE so it is a no-op when the type exists:
 *   DO $cdc$BEGIN CREATE TYPE ...; EXCEPTION WHEN duplicate_object THEN NULL; END$cdc$;
 * with a dollar-quote tag the body does not contain (a type name or a label
 * may hold "$cdc$"). An existing type is left as it is, labels included.
 */
static int enum_ddl(cdc_buf *out, const cdc_field *f, bool guarded, char *errstr,
                    size_t errstr_size)
{
    int rc = -1;
    size_t mark = out->len;
    json_error_t jerr;
    json_t *labels = f->enum_json ? json_loads(f->enum_json, 0, &jerr) : NULL;
    cdc_buf body;
    cdc_buf_init(&body);
    size_t n = json_array_size(labels), len = strlen(f->pg_type);
    for (size_t i = 0; i < n; i++)
        if (!json_is_string(json_array_get(labels, i)))
            n = 0;
    if (!json_is_array(labels) || n != json_array_size(labels)) {
        snprintf(errstr, errstr_size, "column \"%s\": pg.enum is not an array of labels",
                 f->pg_name);
        goto done;
    }
    if (!sql_type_ok(f->pg_type) || (len >= 2 && strcmp(f->pg_type + len - 2, "[]") == 0)) {
        snprintf(errstr, errstr_size, "column \"%s\": \"%s\" is not a safe enum type name",
                 f->pg_name, f->pg_type);
        goto done;
    }
    size_t nsp = type_schema_len(f->pg_type);
    if (nsp > 0) {
        cdc_buf_puts(out, "CREATE SCHEMA IF NOT EXISTS ");
        cdc_buf_append(out, f->pg_type, nsp);
        cdc_buf_puts(out, ";\n");
    }
    cdc_buf_printf(&body, "CREATE TYPE %s AS ENUM (", f->pg_type);
    for (size_t i = 0; i < n; i++) {
        cdc_buf_puts(&body, i ? ", " : "");
        literal(&body, json_string_value(json_array_get(labels, i)));
    }
    cdc_buf_putc(&body, ')');
    if (guarded) {
        char tag[32] = "$cdc$";
        for (int k = 1; strstr(cdc_buf_cstr(&body), tag); k++)
            snprintf(tag, sizeof tag, "$cdc%d$", k);
        cdc_buf_printf(out, "DO %sBEGIN %s; EXCEPTION WHEN duplicate_object THEN NULL; END%s;\n",
                       tag, cdc_buf_cstr(&body), tag);
    } else {
        cdc_buf_printf(out, "%s;\n", cdc_buf_cstr(&body));
    }
    rc = 0;
done:
    if (rc != 0)
        out->len = mark;
    json_decref(labels);
    cdc_buf_free(&body);
    return rc;
}

char **sql_enum_labels(const cdc_field *f, char *errstr, size_t errstr_size)
{
    json_error_t jerr;
    json_t *labels = f->enum_json ? json_loads(f->enum_json, 0, &jerr) : NULL;
    size_t n = json_array_size(labels), len = strlen(f->pg_type);
    char **out = NULL;
    if (!json_is_array(labels) || !sql_type_ok(f->pg_type) ||
        (len >= 2 && strcmp(f->pg_type + len - 2, "[]") == 0)) {
        snprintf(errstr, errstr_size, "column \"%s\": no usable enum type and labels", f->pg_name);
        goto done;
    }
    out = cdc_xcalloc(n + 1, sizeof *out);
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(labels, i));
        if (!s) {
            snprintf(errstr, errstr_size, "column \"%s\": pg.enum is not an array of labels",
                     f->pg_name);
            sql_free_labels(out);
            out = NULL;
            goto done;
        }
        out[i] = cdc_xstrdup(s);
    }
done:
    json_decref(labels);
    return out;
}

void sql_free_labels(char **labels)
{
    for (char **l = labels; l && *l; l++)
        free(*l);
    free(labels);
}

void sql_add_enum_label(cdc_buf *out, const cdc_field *f, const char *label, const char *other,
                        bool after)
{
    cdc_buf_printf(out, "ALTER TYPE %s ADD VALUE IF NOT EXISTS ", f->pg_type);
    literal(out, label);
    if (other) {
        cdc_buf_puts(out, after ? " AFTER " : " BEFORE ");
        literal(out, other);
    }
}

int sql_create_enum(cdc_buf *out, const cdc_field *f, char *errstr, size_t errstr_size)
{
    return enum_ddl(out, f, false, errstr, errstr_size);
}

/*
 * Field f has an enum to create: it has labels and is not an array
 * (format_type then names the array type; relcache records no labels for
 * it anyway, so such a column relies on its element enum existing).
 */
static bool has_enum(const cdc_field *f)
{
    size_t len = strlen(f->pg_type);
    return f->enum_json && !(len >= 2 && strcmp(f->pg_type + len - 2, "[]") == 0);
}

/* Field i is the first of the table to use its enum type. */
static bool first_enum_use(const cdc_table_schema *s, int i)
{
    if (!has_enum(&s->fields[i]))
        return false;
    for (int j = 0; j < i; j++)
        if (has_enum(&s->fields[j]) && strcmp(s->fields[j].pg_type, s->fields[i].pg_type) == 0)
            return false;
    return true;
}

/* ---- DDL ---- */

/*
 * Enums are created here too, guarded, so the script stands alone; a caller
 * that already ran sql_create_enum for missing types loses nothing.
 */
int sql_create_table(cdc_buf *out, const cdc_table_schema *s, bool primary_key, char *errstr,
                     size_t errstr_size)
{
    size_t mark = out->len;
    for (int i = 0; i < s->nfields; i++)
        if (check_type(s, i, errstr, errstr_size) != 0)
            goto fail;
    cdc_buf_puts(out, "CREATE SCHEMA IF NOT EXISTS ");
    sql_ident(out, s->schema_name);
    cdc_buf_puts(out, ";\n");
    for (int i = 0; i < s->nfields; i++)
        if (first_enum_use(s, i) && enum_ddl(out, &s->fields[i], true, errstr, errstr_size) != 0)
            goto fail;
    cdc_buf_puts(out, "CREATE TABLE IF NOT EXISTS ");
    sql_qualified(out, s->schema_name, s->table_name);
    cdc_buf_puts(out, " (");
    for (int i = 0; i < s->nfields; i++) {
        cdc_buf_puts(out, i ? ", " : "");
        sql_ident(out, s->fields[i].pg_name);
        cdc_buf_printf(out, " %s%s", s->fields[i].pg_type, s->fields[i].nullable ? "" : " NOT NULL");
    }
    if (s->nkey > 0 && primary_key) {
        cdc_buf_puts(out, s->nfields ? ", PRIMARY KEY (" : "PRIMARY KEY (");
        for (int k = 0; k < s->nkey; k++) {
            cdc_buf_puts(out, k ? ", " : "");
            sql_ident(out, s->fields[s->key_idx[k]].pg_name);
        }
        cdc_buf_putc(out, ')');
    }
    cdc_buf_puts(out, ");\n");
    return 0;
fail:
    out->len = mark;
    return -1;
}

void sql_add_primary_key(cdc_buf *out, const char *schema, const char *table,
                         const char *const *cols, int ncols)
{
    cdc_buf_puts(out, "ALTER TABLE ");
    sql_qualified(out, schema, table);
    cdc_buf_puts(out, " ADD PRIMARY KEY (");
    for (int k = 0; k < ncols; k++) {
        cdc_buf_puts(out, k ? ", " : "");
        sql_ident(out, cols[k]);
    }
    cdc_buf_putc(out, ')');
}

/*
 * No NOT NULL: the target's existing rows have no value for the new column
 * (the source's ADD COLUMN default is not in the stream), so the constraint
 * would make the ALTER fail.
 */
int sql_add_column(cdc_buf *out, const cdc_table_schema *s, int field, char *errstr,
                   size_t errstr_size)
{
    size_t mark = out->len;
    if (field < 0 || field >= s->nfields) {
        snprintf(errstr, errstr_size, "%s.%s: no field %d", s->schema_name, s->table_name, field);
        goto fail;
    }
    if (check_type(s, field, errstr, errstr_size) != 0)
        goto fail;
    if (has_enum(&s->fields[field]) &&
        enum_ddl(out, &s->fields[field], true, errstr, errstr_size) != 0)
        goto fail;
    cdc_buf_puts(out, "ALTER TABLE ");
    sql_qualified(out, s->schema_name, s->table_name);
    cdc_buf_puts(out, " ADD COLUMN IF NOT EXISTS ");
    sql_ident(out, s->fields[field].pg_name);
    cdc_buf_printf(out, " %s;\n", s->fields[field].pg_type);
    return 0;
fail:
    out->len = mark;
    return -1;
}

static void stage_name(cdc_buf *out, const char *stage)
{
    cdc_buf_puts(out, "pg_temp.");
    sql_ident(out, stage);
}

/*
 * IF NOT EXISTS: the caller issues it before every batch; the stage name
 * identifies the schema version, so an existing stage has the right columns.
 */
int sql_create_stage(cdc_buf *out, const cdc_table_schema *s, const char *stage, char *errstr,
                     size_t errstr_size)
{
    for (int i = 0; i < s->nfields; i++) {
        if (check_type(s, i, errstr, errstr_size) != 0)
            return -1;
        if (reserved_name(s->fields[i].pg_name)) {
            snprintf(errstr, errstr_size, "%s.%s: column name \"%s\" is reserved by cdc-apply",
                     s->schema_name, s->table_name, s->fields[i].pg_name);
            return -1;
        }
    }
    cdc_buf_puts(out, "CREATE TEMP TABLE IF NOT EXISTS ");
    stage_name(out, stage);
    cdc_buf_puts(out, " (");
    for (int i = 0; i < s->nfields; i++) {
        sql_ident(out, s->fields[i].pg_name);
        cdc_buf_printf(out, " %s, ", s->fields[i].pg_type);
    }
    cdc_buf_puts(out, "\"" OP_COL "\" \"char\", \"" KEEP_COL "\" text) ON COMMIT DELETE ROWS");
    return 0;
}

/* "a", "b", ... */
static void column_list(cdc_buf *out, const cdc_table_schema *s)
{
    for (int i = 0; i < s->nfields; i++) {
        cdc_buf_puts(out, i ? ", " : "");
        sql_ident(out, s->fields[i].pg_name);
    }
}

static bool is_key(const cdc_table_schema *s, int i)
{
    for (int k = 0; k < s->nkey; k++)
        if (s->key_idx[k] == i)
            return true;
    return false;
}

/*
 * t.k1 = s.k1 AND ... Key columns are NOT NULL, so '=' is exact. A keyless
 * schema yields "false": the merge statements then match nothing instead
 * of every row.
 */
static void key_match(cdc_buf *out, const cdc_table_schema *s)
{
    if (s->nkey == 0)
        cdc_buf_puts(out, "false");
    for (int k = 0; k < s->nkey; k++) {
        const char *name = s->fields[s->key_idx[k]].pg_name;
        cdc_buf_puts(out, k ? " AND t." : "t.");
        sql_ident(out, name);
        cdc_buf_puts(out, " = s.");
        sql_ident(out, name);
    }
}

void sql_copy_stage(cdc_buf *out, const cdc_table_schema *s, const char *stage)
{
    cdc_buf_puts(out, "COPY ");
    stage_name(out, stage);
    cdc_buf_puts(out, " (");
    column_list(out, s);
    cdc_buf_puts(out, s->nfields ? ", " : "");
    cdc_buf_puts(out, "\"" OP_COL "\", \"" KEEP_COL "\") FROM STDIN");
}

void sql_merge_delete(cdc_buf *out, const cdc_table_schema *s, const char *stage)
{
    cdc_buf_puts(out, "DELETE FROM ");
    sql_qualified(out, s->schema_name, s->table_name);
    cdc_buf_puts(out, " AS t USING ");
    stage_name(out, stage);
    cdc_buf_puts(out, " AS s WHERE s.\"" OP_COL "\" = 'D' AND ");
    key_match(out, s);
}

/* Every staged row, inserted as it is (a table still waiting for its key). */
void sql_insert_stage(cdc_buf *out, const cdc_table_schema *s, const char *stage)
{
    cdc_buf_puts(out, "INSERT INTO ");
    sql_qualified(out, s->schema_name, s->table_name);
    cdc_buf_puts(out, " (");
    column_list(out, s);
    cdc_buf_puts(out, ") SELECT ");
    column_list(out, s);
    cdc_buf_puts(out, " FROM ");
    stage_name(out, stage);
}

/*
 * INSERT INTO t (cols) SELECT cols FROM stage WHERE op = '<op>' ON CONFLICT
 * (key) DO, for the caller to finish; false (and "AND false" appended, so
 * the statement inserts nothing) for a keyless schema.
 */
static bool insert_from_stage(cdc_buf *out, const cdc_table_schema *s, const char *stage, char op)
{
    sql_insert_stage(out, s, stage);
    cdc_buf_printf(out, " WHERE \"" OP_COL "\" = '%c'", op);
    if (s->nkey == 0) {
        cdc_buf_puts(out, " AND false");
        return false;
    }
    cdc_buf_puts(out, " ON CONFLICT (");
    for (int k = 0; k < s->nkey; k++) {
        cdc_buf_puts(out, k ? ", " : "");
        sql_ident(out, s->fields[s->key_idx[k]].pg_name);
    }
    cdc_buf_puts(out, ") DO ");
    return true;
}

/* Staged rows are unique per key, so ON CONFLICT never meets a key twice. */
void sql_merge_upsert(cdc_buf *out, const cdc_table_schema *s, const char *stage)
{
    if (!insert_from_stage(out, s, stage, 'U'))
        return;
    bool any = false;
    for (int i = 0; i < s->nfields; i++) {
        if (is_key(s, i))
            continue;
        cdc_buf_puts(out, any ? ", " : "UPDATE SET ");
        sql_ident(out, s->fields[i].pg_name);
        cdc_buf_puts(out, " = EXCLUDED.");
        sql_ident(out, s->fields[i].pg_name);
        any = true;
    }
    if (!any)
        cdc_buf_puts(out, "NOTHING");
}

/*
 * Rows of updates (op 'W'), which should exist: an UPDATE through the key
 * costs the target about a third less than INSERT ... ON CONFLICT DO UPDATE
 * (no speculative insertion). Appends nothing for a table made only of key
 * columns: there is nothing to set, and sql_merge_replace_missing does all.
 */
void sql_merge_replace(cdc_buf *out, const cdc_table_schema *s, const char *stage)
{
    bool any = false;
    for (int i = 0; i < s->nfields && !any; i++)
        any = !is_key(s, i);
    if (!any || s->nkey == 0)
        return;
    cdc_buf_puts(out, "UPDATE ");
    sql_qualified(out, s->schema_name, s->table_name);
    cdc_buf_puts(out, " AS t SET ");
    any = false;
    for (int i = 0; i < s->nfields; i++) {
        if (is_key(s, i))
            continue;
        cdc_buf_puts(out, any ? ", " : "");
        sql_ident(out, s->fields[i].pg_name);
        cdc_buf_puts(out, " = s.");
        sql_ident(out, s->fields[i].pg_name);
        any = true;
    }
    cdc_buf_puts(out, " FROM ");
    stage_name(out, stage);
    cdc_buf_puts(out, " AS s WHERE s.\"" OP_COL "\" = 'W' AND ");
    key_match(out, s);
}

/* The op 'W' rows the target lacked (the UPDATE found fewer rows): inserted. */
void sql_merge_replace_missing(cdc_buf *out, const cdc_table_schema *s, const char *stage)
{
    if (insert_from_stage(out, s, stage, 'W'))
        cdc_buf_puts(out, "NOTHING");
}

/*
 * Non-key columns only: keys are equal by construction. A table made only
 * of key columns never stages a partial update (keys always carry values),
 * but the statement must still parse, so it sets the first key to itself.
 */
void sql_merge_update(cdc_buf *out, const cdc_table_schema *s, const char *stage)
{
    cdc_buf_puts(out, "UPDATE ");
    sql_qualified(out, s->schema_name, s->table_name);
    cdc_buf_puts(out, " AS t SET ");
    bool any = false;
    for (int i = 0; i < s->nfields; i++) {
        if (is_key(s, i))
            continue;
        const char *name = s->fields[i].pg_name;
        cdc_buf_puts(out, any ? ", " : "");
        sql_ident(out, name);
        cdc_buf_printf(out, " = CASE WHEN substr(s.\"" KEEP_COL "\", %d, 1) = '1' THEN t.", i + 1);
        sql_ident(out, name);
        cdc_buf_puts(out, " ELSE s.");
        sql_ident(out, name);
        cdc_buf_puts(out, " END");
        any = true;
    }
    if (!any && s->nkey > 0) {
        const char *name = s->fields[s->key_idx[0]].pg_name;
        sql_ident(out, name);
        cdc_buf_puts(out, " = t.");
        sql_ident(out, name);
    }
    cdc_buf_puts(out, " FROM ");
    stage_name(out, stage);
    cdc_buf_puts(out, " AS s WHERE s.\"" OP_COL "\" = 'P' AND ");
    key_match(out, s);
}

void sql_truncate(cdc_buf *out, const cdc_table_schema *s)
{
    cdc_buf_puts(out, "TRUNCATE TABLE ");
    sql_qualified(out, s->schema_name, s->table_name);
}

/* ---- keyless tables ---- */

void sql_keyless_insert(cdc_buf *out, const cdc_table_schema *s)
{
    cdc_buf_puts(out, "INSERT INTO ");
    sql_qualified(out, s->schema_name, s->table_name);
    if (s->nfields == 0) {
        cdc_buf_puts(out, " DEFAULT VALUES");
        return;
    }
    cdc_buf_puts(out, " (");
    column_list(out, s);
    cdc_buf_puts(out, ") VALUES (");
    for (int i = 0; i < s->nfields; i++)
        cdc_buf_printf(out, "%s$%d", i ? ", " : "", i + 1);
    cdc_buf_putc(out, ')');
}

/*
 * WHERE (tableoid, ctid) = (one row equal to $1..$n). tableoid too because a
 * ctid is only unique within one partition. IS NOT DISTINCT FROM uses the
 * column type's equality, so a column type without one (json, xml, point)
 * makes the statement fail, as it does in PostgreSQL's own apply worker.
 */
static void one_row(cdc_buf *out, const cdc_table_schema *s)
{
    cdc_buf_puts(out, " WHERE (tableoid, ctid) = (SELECT tableoid, ctid FROM ");
    sql_qualified(out, s->schema_name, s->table_name);
    cdc_buf_puts(out, " WHERE ");
    if (s->nfields == 0)
        cdc_buf_puts(out, "true");
    for (int i = 0; i < s->nfields; i++) {
        cdc_buf_puts(out, i ? " AND " : "");
        sql_ident(out, s->fields[i].pg_name);
        cdc_buf_printf(out, " IS NOT DISTINCT FROM $%d", i + 1);
    }
    cdc_buf_puts(out, " LIMIT 1)");
}

void sql_keyless_update(cdc_buf *out, const cdc_table_schema *s)
{
    cdc_buf_puts(out, "UPDATE ");
    sql_qualified(out, s->schema_name, s->table_name);
    cdc_buf_puts(out, " SET ");
    for (int i = 0; i < s->nfields; i++) {
        cdc_buf_puts(out, i ? ", " : "");
        sql_ident(out, s->fields[i].pg_name);
        cdc_buf_printf(out, " = $%d", s->nfields + i + 1);
    }
    one_row(out, s);
}

void sql_keyless_delete(cdc_buf *out, const cdc_table_schema *s)
{
    cdc_buf_puts(out, "DELETE FROM ");
    sql_qualified(out, s->schema_name, s->table_name);
    one_row(out, s);
}

/* ---- COPY ---- */

/*
 * COPY text format: backslash escapes for the characters that delimit it,
 * then `term`. This runs for every value of every staged row, so it reserves
 * the worst case once and writes the bytes directly.
 */
static void copy_value(cdc_buf *out, const char *v, char term)
{
    if (!v) {
        cdc_buf_reserve(out, 3);
        out->data[out->len++] = '\\';
        out->data[out->len++] = 'N';
        out->data[out->len++] = (uint8_t)term;
        return;
    }
    /* The letter after the backslash for each byte that needs one. */
    static const char escape[256] = {['\\'] = '\\', ['\t'] = 't', ['\n'] = 'n', ['\r'] = 'r'};
    size_t n = strlen(v);
    cdc_buf_reserve(out, 2 * n + 1);
    uint8_t *o = out->data + out->len;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)v[i];
        if (escape[c]) {
            *o++ = '\\';
            *o++ = (uint8_t)escape[c];
        } else {
            *o++ = c;
        }
    }
    *o++ = (uint8_t)term;
    out->len = (size_t)(o - out->data);
}

void sql_copy_table(cdc_buf *out, const cdc_table_schema *s)
{
    cdc_buf_puts(out, "COPY ");
    sql_qualified(out, s->schema_name, s->table_name);
    cdc_buf_puts(out, " (");
    column_list(out, s);
    cdc_buf_puts(out, ") FROM STDIN");
}

void sql_copy_row(cdc_buf *out, int nfields, const char *const *vals)
{
    for (int i = 0; i < nfields; i++)
        copy_value(out, vals[i], i + 1 < nfields ? '\t' : '\n');
}

void sql_copy_line(cdc_buf *out, int nfields, const char *const *vals, char op, const char *keep)
{
    for (int i = 0; i < nfields; i++)
        copy_value(out, vals[i], '\t');
    cdc_buf_reserve(out, 2);
    out->data[out->len++] = (uint8_t)op;
    out->data[out->len++] = '\t';
    copy_value(out, keep, '\n');
}
