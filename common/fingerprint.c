/*
 * CRC-64-AVRO schema fingerprints over the Parsing Canonical Form (Avro 1.11
 * specification, "Parsing Canonical Form for Schemas" and "Schema
 * Fingerprints").
 *
 * Consumers find the writer schema of a single-object encoded message by this
 * fingerprint, so it must match what the Java reference implementation
 * computes byte for byte; tests/unit/test_fingerprint.c checks it against the
 * vectors published in apache/avro share/test/data/schema-tests.txt.
 *
 * The canonical form is written by hand from the jansson tree rather than
 * with json_dumps: the attribute order is fixed by the spec, every attribute
 * but seven is dropped, and names must be rewritten to full names, which
 * needs the namespace in effect at each point of the walk.
 */
#include "cdc/fingerprint.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cdc/buf.h"

#define CRC64_AVRO_EMPTY UINT64_C(0xc15d213aa4d7a795)

static uint64_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

/* The spec's table construction, run once per process. */
static void crc_init(void)
{
    for (int i = 0; i < 256; i++) {
        uint64_t fp = (uint64_t)i;
        for (int j = 0; j < 8; j++)
            fp = (fp >> 1) ^ (CRC64_AVRO_EMPTY & (~(fp & 1) + 1));
        crc_table[i] = fp;
    }
}

uint64_t cdc_crc64_avro(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t fp = CRC64_AVRO_EMPTY;

    pthread_once(&crc_once, crc_init);
    for (size_t i = 0; i < len; i++)
        fp = (fp >> 8) ^ crc_table[(fp ^ p[i]) & 0xff];
    return fp;
}

/* ---- Parsing Canonical Form ------------------------------------------- */

/*
 * Walk state: the output, the full names defined so far (references may only
 * point to names defined earlier in the text, or to the record being
 * defined), and the first error.
 */
typedef struct pcf_ctx {
    cdc_buf out;
    char **names;
    size_t n_names;
    size_t cap_names;
    char *errstr;
    size_t errstr_size;
} pcf_ctx;

static int pcf_fail(pcf_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int pcf_fail(pcf_ctx *c, const char *fmt, ...)
{
    if (c->errstr && c->errstr_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->errstr, c->errstr_size, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static const char *const primitives[] = {
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
};

static bool is_primitive(const char *s)
{
    for (size_t i = 0; i < sizeof primitives / sizeof primitives[0]; i++)
        if (strcmp(s, primitives[i]) == 0)
            return true;
    return false;
}

/* [A-Za-z_][A-Za-z0-9_]* : the spec's rule for names, namespace components
 * and enum symbols. */
static bool is_simple_name(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        bool alpha = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == '_';
        if (!alpha && (i == 0 || ch < '0' || ch > '9'))
            return false;
    }
    return true;
}

static bool is_dotted_name(const char *s)
{
    const char *start = s;
    for (;;) {
        const char *dot = strchr(start, '.');
        size_t len = dot ? (size_t)(dot - start) : strlen(start);
        if (!is_simple_name(start, len))
            return false;
        if (!dot)
            return true;
        start = dot + 1;
    }
}

static bool name_defined(const pcf_ctx *c, const char *full)
{
    for (size_t i = 0; i < c->n_names; i++)
        if (strcmp(c->names[i], full) == 0)
            return true;
    return false;
}

static void name_add(pcf_ctx *c, char *full)
{
    if (c->n_names == c->cap_names) {
        c->cap_names = c->cap_names ? c->cap_names * 2 : 16;
        c->names = cdc_xrealloc(c->names, c->cap_names * sizeof *c->names);
    }
    c->names[c->n_names++] = full;
}

/* "ns.name", or "name" in the null namespace. Caller frees. */
static char *make_fullname(const char *ns, const char *name)
{
    if (strchr(name, '.') || !ns || !*ns)
        return cdc_xstrdup(name);
    size_t nl = strlen(ns), ml = strlen(name);
    char *s = cdc_xmalloc(nl + 1 + ml + 1);
    memcpy(s, ns, nl);
    s[nl] = '.';
    memcpy(s + nl + 1, name, ml + 1);
    return s;
}

/*
 * [STRINGS]: jansson has already decoded every escape, so the string is
 * written back as raw UTF-8. Only the characters JSON cannot hold literally
 * are escaped, with the same short forms as the Java implementation.
 */
static void put_json_string(cdc_buf *b, const char *s)
{
    cdc_buf_putc(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': cdc_buf_puts(b, "\\\""); break;
        case '\\': cdc_buf_puts(b, "\\\\"); break;
        case '\b': cdc_buf_puts(b, "\\b"); break;
        case '\f': cdc_buf_puts(b, "\\f"); break;
        case '\n': cdc_buf_puts(b, "\\n"); break;
        case '\r': cdc_buf_puts(b, "\\r"); break;
        case '\t': cdc_buf_puts(b, "\\t"); break;
        default:
            if (*p < 0x20)
                cdc_buf_printf(b, "\\u%04x", *p);
            else
                cdc_buf_putc(b, *p);
        }
    }
    cdc_buf_putc(b, '"');
}

static int pcf_schema(pcf_ctx *c, json_t *schema, const char *ns, bool in_union);

/*
 * A schema given as a JSON string: a primitive, or a reference to a named
 * type. References resolve against the enclosing namespace first and then
 * the null namespace, as the Java parser does.
 */
static int pcf_name_ref(pcf_ctx *c, const char *s, const char *ns)
{
    if (is_primitive(s)) {
        put_json_string(&c->out, s);
        return 0;
    }
    if (!is_dotted_name(s))
        return pcf_fail(c, "invalid type name \"%s\"", s);
    char *full = make_fullname(ns, s);
    if (!name_defined(c, full)) {
        free(full);
        if (strchr(s, '.') || !name_defined(c, s))
            return pcf_fail(c, "unknown type \"%s\"", s);
        full = cdc_xstrdup(s);
    }
    put_json_string(&c->out, full);
    free(full);
    return 0;
}

static int pcf_union(pcf_ctx *c, json_t *arr, const char *ns, bool in_union)
{
    size_t i;
    json_t *item;

    if (in_union)
        return pcf_fail(c, "a union may not directly contain another union");
    cdc_buf_putc(&c->out, '[');
    json_array_foreach(arr, i, item) {
        if (i > 0)
            cdc_buf_putc(&c->out, ',');
        if (pcf_schema(c, item, ns, true) != 0)
            return -1;
    }
    cdc_buf_putc(&c->out, ']');
    return 0;
}

/* [INTEGERS]: size may be a JSON integer or a quoted one ("015" -> 15). */
static int pcf_size(pcf_ctx *c, json_t *v)
{
    json_int_t n = -1;

    if (json_is_integer(v)) {
        n = json_integer_value(v);
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *endp;
        if (*s >= '0' && *s <= '9') {
            long long ll = strtoll(s, &endp, 10);
            if (*endp == '\0')
                n = ll;
        }
    }
    if (n < 0 || n > INT32_MAX)
        return pcf_fail(c, "fixed size must be a non-negative integer");
    cdc_buf_printf(&c->out, "%" PRId64, (int64_t)n);
    return 0;
}

static int pcf_fields(pcf_ctx *c, json_t *fields, const char *ns)
{
    size_t i;
    json_t *f;

    if (!json_is_array(fields))
        return pcf_fail(c, "record \"fields\" must be an array");
    cdc_buf_puts(&c->out, ",\"fields\":[");
    json_array_foreach(fields, i, f) {
        json_t *fname = json_object_get(f, "name");
        json_t *ftype = json_object_get(f, "type");
        if (!json_is_object(f) || !json_is_string(fname) || !ftype)
            return pcf_fail(c, "record field %zu needs a name and a type", i);
        const char *fn = json_string_value(fname);
        if (!is_simple_name(fn, strlen(fn)))
            return pcf_fail(c, "invalid field name \"%s\"", fn);
        if (i > 0)
            cdc_buf_putc(&c->out, ',');
        /* Field names are never qualified: they are not type names. */
        cdc_buf_puts(&c->out, "{\"name\":");
        put_json_string(&c->out, fn);
        cdc_buf_puts(&c->out, ",\"type\":");
        if (pcf_schema(c, ftype, ns, false) != 0)
            return -1;
        cdc_buf_putc(&c->out, '}');
    }
    cdc_buf_putc(&c->out, ']');
    return 0;
}

static int pcf_symbols(pcf_ctx *c, json_t *symbols)
{
    size_t i;
    json_t *s;

    if (!json_is_array(symbols))
        return pcf_fail(c, "enum \"symbols\" must be an array");
    cdc_buf_puts(&c->out, ",\"symbols\":[");
    json_array_foreach(symbols, i, s) {
        const char *sym = json_string_value(s);
        if (!sym || !is_simple_name(sym, strlen(sym)))
            return pcf_fail(c, "invalid enum symbol at index %zu", i);
        if (i > 0)
            cdc_buf_putc(&c->out, ',');
        put_json_string(&c->out, sym);
    }
    cdc_buf_putc(&c->out, ']');
    return 0;
}

/*
 * record, enum, fixed. [FULLNAMES]: a dotted name is already full; otherwise
 * the "namespace" attribute, else the enclosing namespace, qualifies it. The
 * namespace of the full name is what nested types and references inherit.
 * The name is registered before the fields are walked so a record may refer
 * to itself.
 */
static int pcf_named(pcf_ctx *c, json_t *obj, const char *type, const char *ns)
{
    json_t *jname = json_object_get(obj, "name");
    json_t *jns = json_object_get(obj, "namespace");
    const char *name = json_string_value(jname);
    char *full = NULL, *inner_ns = NULL;
    int rc = -1;

    if (!name)
        return pcf_fail(c, "%s schema without a name", type);
    if (jns && !json_is_string(jns) && !json_is_null(jns))
        return pcf_fail(c, "namespace of \"%s\" must be a string", name);
    if (!strchr(name, '.') && json_is_string(jns))
        ns = json_string_value(jns);
    if (ns && *ns && !is_dotted_name(ns))
        return pcf_fail(c, "invalid namespace \"%s\"", ns);
    if (!is_dotted_name(name))
        return pcf_fail(c, "invalid name \"%s\"", name);

    full = make_fullname(ns, name);
    if (is_primitive(full)) {
        pcf_fail(c, "\"%s\" cannot be redefined", full);
        goto done;
    }
    if (name_defined(c, full)) {
        pcf_fail(c, "\"%s\" is defined twice", full);
        goto done;
    }
    const char *dot = strrchr(full, '.');
    inner_ns = dot ? cdc_xstrndup(full, (size_t)(dot - full)) : NULL;
    name_add(c, full);

    cdc_buf_puts(&c->out, "{\"name\":");
    put_json_string(&c->out, full);
    full = NULL; /* owned by the name table now */
    cdc_buf_puts(&c->out, ",\"type\":");
    put_json_string(&c->out, type);

    if (strcmp(type, "record") == 0)
        rc = pcf_fields(c, json_object_get(obj, "fields"), inner_ns);
    else if (strcmp(type, "enum") == 0)
        rc = pcf_symbols(c, json_object_get(obj, "symbols"));
    else {
        json_t *size = json_object_get(obj, "size");
        if (!size) {
            pcf_fail(c, "fixed \"%s\" without a size", name);
            goto done;
        }
        cdc_buf_puts(&c->out, ",\"size\":");
        rc = pcf_size(c, size);
    }
    if (rc == 0)
        cdc_buf_putc(&c->out, '}');
done:
    free(full);
    free(inner_ns);
    return rc;
}

static int pcf_object(pcf_ctx *c, json_t *obj, const char *ns)
{
    json_t *jtype = json_object_get(obj, "type");
    const char *type = json_string_value(jtype);

    if (!type)
        return pcf_fail(c, "schema object without a string \"type\"");
    /* [PRIMITIVES] + [STRIP]: {"type":"int","logicalType":...} is "int". */
    if (is_primitive(type)) {
        put_json_string(&c->out, type);
        return 0;
    }
    if (strcmp(type, "record") == 0 || strcmp(type, "enum") == 0 ||
        strcmp(type, "fixed") == 0)
        return pcf_named(c, obj, type, ns);
    if (strcmp(type, "array") == 0 || strcmp(type, "map") == 0) {
        const char *key = type[0] == 'a' ? "items" : "values";
        json_t *inner = json_object_get(obj, key);
        if (!inner)
            return pcf_fail(c, "%s schema without \"%s\"", type, key);
        cdc_buf_puts(&c->out, "{\"type\":");
        put_json_string(&c->out, type);
        cdc_buf_printf(&c->out, ",\"%s\":", key);
        if (pcf_schema(c, inner, ns, false) != 0)
            return -1;
        cdc_buf_putc(&c->out, '}');
        return 0;
    }
    /* {"type":"SomeRecord"} is a reference written as an object. */
    return pcf_name_ref(c, type, ns);
}

static int pcf_schema(pcf_ctx *c, json_t *schema, const char *ns, bool in_union)
{
    if (json_is_string(schema))
        return pcf_name_ref(c, json_string_value(schema), ns);
    if (json_is_array(schema))
        return pcf_union(c, schema, ns, in_union);
    if (json_is_object(schema))
        return pcf_object(c, schema, ns);
    return pcf_fail(c, "a schema must be a string, an array or an object");
}

char *cdc_avro_canonical_form(const char *schema_json, char *errstr,
                              size_t errstr_size)
{
    pcf_ctx c = {.errstr = errstr, .errstr_size = errstr_size};
    json_error_t jerr;
    char *result = NULL;

    cdc_buf_init(&c.out);
    /* DECODE_ANY: a bare "int" is a complete schema. */
    json_t *root = json_loads(schema_json, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
                              &jerr);
    if (!root) {
        pcf_fail(&c, "invalid schema JSON at line %d column %d: %s", jerr.line,
                 jerr.column, jerr.text);
        goto done;
    }
    if (pcf_schema(&c, root, NULL, false) != 0)
        goto done;
    result = cdc_xstrndup((const char *)c.out.data, c.out.len);
done:
    json_decref(root);
    for (size_t i = 0; i < c.n_names; i++)
        free(c.names[i]);
    free(c.names);
    cdc_buf_free(&c.out);
    return result;
}

int cdc_avro_fingerprint(const char *schema_json, uint64_t *out, char *errstr,
                         size_t errstr_size)
{
    char *pcf = cdc_avro_canonical_form(schema_json, errstr, errstr_size);
    if (!pcf)
        return -1;
    *out = cdc_crc64_avro(pcf, strlen(pcf));
    free(pcf);
    return 0;
}

void cdc_fingerprint_hex(uint64_t fp, char out[17])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++)
        out[i] = digits[(fp >> (60 - 4 * i)) & 0xf];
    out[16] = '\0';
}

int cdc_fingerprint_parse_hex(const char *hex, uint64_t *out)
{
    uint64_t v = 0;

    if (!hex)
        return -1;
    for (int i = 0; i < 16; i++) {
        char ch = hex[i];
        unsigned d;
        if (ch >= '0' && ch <= '9')
            d = (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            d = (unsigned)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F')
            d = (unsigned)(ch - 'A' + 10);
        else
            return -1; /* also catches a string shorter than 16 */
        v = (v << 4) | d;
    }
    if (hex[16] != '\0')
        return -1;
    *out = v;
    return 0;
}
