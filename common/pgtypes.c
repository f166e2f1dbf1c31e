/*
 * PostgreSQL text forms <-> Avro binary (see cdc/pgtypes.h for the mapping).
 *
 * Both directions are exact: no value goes through floating point unless it
 * already is one, numeric is converted with a small arbitrary-precision
 * routine, and dates use proleptic Gregorian arithmetic on 64-bit integers
 * so BC dates and years past 9999 survive. Parsers accept only the forms the
 * capture session makes Postgres produce (DateStyle=ISO, TimeZone=UTC,
 * bytea_output=hex, extra_float_digits=3); anything else is an error naming
 * the value rather than a guess, because a wrong guess would publish a
 * different value than the one committed.
 */
#include "cdc/pgtypes.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdc/avro_bin.h"

/* numeric's limit; also bounds the work a hostile decimal can cause. */
#define NUMERIC_MAX_PRECISION 1000
/* 10^1000 < 2^3322, so 416 bytes hold any numeric(1000,s) plus sign. */
#define DECIMAL_MAX_BYTES 420
#define VARHDRSZ 4

#define USECS_PER_SEC INT64_C(1000000)
#define USECS_PER_DAY INT64_C(86400000000)
/* Error messages quote at most this much of a bad value. */
#define ERR_VALUE_MAX 64

static int set_err(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int set_err(char *errstr, size_t errstr_size, const char *fmt, ...)
{
    if (errstr && errstr_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* "invalid <what> value "<text>"", the text cut to ERR_VALUE_MAX bytes. */
static int bad_value(char *errstr, size_t errstr_size, const char *what,
                     const char *text, size_t len, const char *why)
{
    int shown = len > ERR_VALUE_MAX ? ERR_VALUE_MAX : (int)len;
    return set_err(errstr, errstr_size, "invalid %s value \"%.*s%s\": %s", what, shown,
                   text, len > ERR_VALUE_MAX ? "..." : "", why);
}

/* ---- mapping ------------------------------------------------------------ */

cdc_coltype cdc_pgtype_map(uint32_t typoid, int32_t typmod)
{
    cdc_coltype t = {.conv = CDC_CONV_STRING, .precision = 0, .scale = 0};

    switch (typoid) {
    case CDC_OID_BOOL: t.conv = CDC_CONV_BOOL; break;
    case CDC_OID_INT2:
    case CDC_OID_INT4: t.conv = CDC_CONV_INT; break;
    case CDC_OID_INT8: t.conv = CDC_CONV_LONG; break;
    case CDC_OID_FLOAT4: t.conv = CDC_CONV_FLOAT; break;
    case CDC_OID_FLOAT8: t.conv = CDC_CONV_DOUBLE; break;
    case CDC_OID_BYTEA: t.conv = CDC_CONV_BYTES; break;
    case CDC_OID_DATE: t.conv = CDC_CONV_DATE; break;
    case CDC_OID_TIME: t.conv = CDC_CONV_TIME; break;
    case CDC_OID_TIMESTAMP: t.conv = CDC_CONV_TIMESTAMP; break;
    case CDC_OID_TIMESTAMPTZ: t.conv = CDC_CONV_TIMESTAMPTZ; break;
    case CDC_OID_UUID: t.conv = CDC_CONV_UUID; break;
    case CDC_OID_NUMERIC: {
        /* typmod = ((precision << 16) | (scale & 0x7ff)) + VARHDRSZ; since
         * PG15 the scale is an 11-bit two's complement field (-1000..1000). */
        if (typmod < VARHDRSZ)
            break; /* unconstrained numeric: keep the exact text */
        int32_t m = typmod - VARHDRSZ;
        int precision = (m >> 16) & 0xffff;
        int scale = ((m & 0x7ff) ^ 0x400) - 0x400;
        /* A negative scale or one above the precision has no Avro decimal
         * equivalent (Avro requires 0 <= scale <= precision). */
        if (precision < 1 || precision > NUMERIC_MAX_PRECISION || scale < 0 ||
            scale > precision)
            break;
        t.conv = CDC_CONV_DECIMAL;
        t.precision = precision;
        t.scale = scale;
        break;
    }
    default: break;
    }
    return t;
}

static json_t *logical(const char *type, const char *logical_type)
{
    return json_pack("{s:s, s:s}", "type", type, "logicalType", logical_type);
}

json_t *cdc_pgtype_avro_type(const cdc_coltype *t)
{
    switch (t->conv) {
    case CDC_CONV_BOOL: return json_string("boolean");
    case CDC_CONV_INT: return json_string("int");
    case CDC_CONV_LONG: return json_string("long");
    case CDC_CONV_FLOAT: return json_string("float");
    case CDC_CONV_DOUBLE: return json_string("double");
    case CDC_CONV_BYTES: return json_string("bytes");
    case CDC_CONV_DECIMAL:
        return json_pack("{s:s, s:s, s:i, s:i}", "type", "bytes", "logicalType", "decimal",
                         "precision", t->precision, "scale", t->scale);
    case CDC_CONV_DATE: return logical("int", "date");
    case CDC_CONV_TIME: return logical("long", "time-micros");
    case CDC_CONV_TIMESTAMP: return logical("long", "local-timestamp-micros");
    case CDC_CONV_TIMESTAMPTZ: return logical("long", "timestamp-micros");
    case CDC_CONV_UUID: return logical("string", "uuid");
    case CDC_CONV_STRING: break;
    }
    return json_string("string");
}

static int primitive_conv(const char *type, cdc_conv *out)
{
    static const struct { const char *name; cdc_conv conv; } prims[] = {
        {"string", CDC_CONV_STRING}, {"boolean", CDC_CONV_BOOL}, {"int", CDC_CONV_INT},
        {"long", CDC_CONV_LONG},     {"float", CDC_CONV_FLOAT},  {"double", CDC_CONV_DOUBLE},
        {"bytes", CDC_CONV_BYTES},
    };
    for (size_t i = 0; i < sizeof prims / sizeof prims[0]; i++) {
        if (strcmp(type, prims[i].name) == 0) {
            *out = prims[i].conv;
            return 0;
        }
    }
    return -1;
}

int cdc_pgtype_from_avro(const json_t *avro_type, cdc_coltype *out)
{
    cdc_coltype t = {.conv = CDC_CONV_STRING, .precision = 0, .scale = 0};

    /* Nullable columns are ["null", T]; accept either order. */
    if (json_is_array(avro_type)) {
        if (json_array_size(avro_type) != 2)
            return -1;
        const json_t *a = json_array_get(avro_type, 0), *b = json_array_get(avro_type, 1);
        if (json_is_string(a) && strcmp(json_string_value(a), "null") == 0)
            avro_type = b;
        else if (json_is_string(b) && strcmp(json_string_value(b), "null") == 0)
            avro_type = a;
        else
            return -1;
    }
    if (json_is_string(avro_type)) {
        if (primitive_conv(json_string_value(avro_type), &t.conv) != 0)
            return -1;
        *out = t;
        return 0;
    }
    if (!json_is_object(avro_type))
        return -1;

    const char *type = json_string_value(json_object_get(avro_type, "type"));
    const json_t *jlt = json_object_get(avro_type, "logicalType");
    if (!type)
        return -1;
    if (!jlt) {
        if (primitive_conv(type, &t.conv) != 0)
            return -1;
        *out = t;
        return 0;
    }
    const char *lt = json_string_value(jlt);
    if (!lt)
        return -1;

    if (strcmp(type, "bytes") == 0 && strcmp(lt, "decimal") == 0) {
        const json_t *jp = json_object_get(avro_type, "precision");
        const json_t *js = json_object_get(avro_type, "scale");
        if (!json_is_integer(jp) || (js && !json_is_integer(js)))
            return -1;
        json_int_t p = json_integer_value(jp), s = js ? json_integer_value(js) : 0;
        if (p < 1 || p > NUMERIC_MAX_PRECISION || s < 0 || s > p)
            return -1;
        t.conv = CDC_CONV_DECIMAL;
        t.precision = (int)p;
        t.scale = (int)s;
    } else if (strcmp(type, "int") == 0 && strcmp(lt, "date") == 0) {
        t.conv = CDC_CONV_DATE;
    } else if (strcmp(type, "long") == 0 && strcmp(lt, "time-micros") == 0) {
        t.conv = CDC_CONV_TIME;
    } else if (strcmp(type, "long") == 0 && strcmp(lt, "timestamp-micros") == 0) {
        t.conv = CDC_CONV_TIMESTAMPTZ;
    } else if (strcmp(type, "long") == 0 && strcmp(lt, "local-timestamp-micros") == 0) {
        t.conv = CDC_CONV_TIMESTAMP;
    } else if (strcmp(type, "string") == 0 && strcmp(lt, "uuid") == 0) {
        t.conv = CDC_CONV_UUID;
    } else {
        return -1;
    }
    *out = t;
    return 0;
}

/* ---- small parsing helpers ---------------------------------------------- */

/* A bounded cursor over the (not NUL-terminated) text of one value. */
typedef struct cursor {
    const char *p;
    const char *end;
} cursor;

static bool cur_eat(cursor *c, char ch)
{
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

static bool cur_eat_str(cursor *c, const char *s)
{
    size_t n = strlen(s);
    if ((size_t)(c->end - c->p) >= n && memcmp(c->p, s, n) == 0) {
        c->p += n;
        return true;
    }
    return false;
}

static bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

/* Between min and max decimal digits (max <= 18, so no overflow). */
static bool cur_digits(cursor *c, int min, int max, int64_t *out, int *count)
{
    int64_t v = 0;
    int n = 0;
    while (c->p < c->end && is_digit(*c->p) && n < max) {
        v = v * 10 + (*c->p - '0');
        c->p++;
        n++;
    }
    if (n < min || (c->p < c->end && is_digit(*c->p)))
        return false;
    *out = v;
    if (count)
        *count = n;
    return true;
}

static bool text_is(const char *text, size_t len, const char *s)
{
    return strlen(s) == len && memcmp(text, s, len) == 0;
}

/* Optional '-', then 1..19 digits, nothing else; overflow-checked. */
static bool parse_int64(const char *text, size_t len, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    uint64_t v = 0, limit;

    if (len > 0 && text[0] == '-') {
        neg = true;
        i = 1;
    }
    if (i == len)
        return false;
    limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < len; i++) {
        if (!is_digit(text[i]))
            return false;
        unsigned d = (unsigned)(text[i] - '0');
        if (v > (limit - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = neg ? (int64_t)(~v + 1) : (int64_t)v;
    return true;
}

/* ---- calendar ------------------------------------------------------------- */

/*
 * Days since 1970-01-01 of a proleptic Gregorian date with astronomical year
 * numbering (1 BC = year 0), after H. Hinnant's days_from_civil: shift the
 * year to start in March so the leap day is last, then count 400-year eras.
 */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int days_in_month(int64_t y, int m)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : mdays[m - 1];
}

/*
 * YYYY-MM-DD with four or more year digits (Postgres pads to four and
 * prints five or more past 9999). The year is returned as written; the BC
 * suffix comes at the very end of the value and is handled by the caller.
 */
static bool parse_ymd(cursor *c, int64_t *year, int *month, int *day)
{
    int64_t y, m, d;
    if (!cur_digits(c, 4, 9, &y, NULL) || !cur_eat(c, '-') ||
        !cur_digits(c, 2, 2, &m, NULL) || !cur_eat(c, '-') || !cur_digits(c, 2, 2, &d, NULL))
        return false;
    if (y < 1 || m < 1 || m > 12 || d < 1)
        return false;
    *year = y;
    *month = (int)m;
    *day = (int)d;
    return true;
}

static bool ymd_to_days(int64_t year, int month, int day, bool bc, int64_t *days)
{
    int64_t astro = bc ? 1 - year : year;
    if (day > days_in_month(astro, month))
        return false;
    *days = days_from_civil(astro, month, day);
    return true;
}

/* HH:MM:SS[.f{1,6}] -> micros since midnight; 24:00:00 is midnight at the end
 * of the day, which Postgres stores as 86400000000. */
static bool parse_hms(cursor *c, int64_t *micros)
{
    int64_t h, mi, s, frac = 0;
    int nfrac = 0;
    if (!cur_digits(c, 2, 2, &h, NULL) || !cur_eat(c, ':') ||
        !cur_digits(c, 2, 2, &mi, NULL) || !cur_eat(c, ':') || !cur_digits(c, 2, 2, &s, NULL))
        return false;
    if (cur_eat(c, '.') && !cur_digits(c, 1, 6, &frac, &nfrac))
        return false;
    for (int i = nfrac; i < 6; i++)
        frac *= 10;
    if (h > 24 || mi > 59 || s > 59 || (h == 24 && (mi || s || frac)))
        return false;
    *micros = ((h * 60 + mi) * 60 + s) * USECS_PER_SEC + frac;
    return true;
}

/* +HH, +HH:MM or +HH:MM:SS (Postgres limits offsets to 15:59:59). */
static bool parse_offset(cursor *c, int64_t *seconds)
{
    int sign;
    int64_t h, m = 0, s = 0;
    if (cur_eat(c, '+'))
        sign = 1;
    else if (cur_eat(c, '-'))
        sign = -1;
    else
        return false;
    if (!cur_digits(c, 2, 2, &h, NULL))
        return false;
    if (cur_eat(c, ':')) {
        if (!cur_digits(c, 2, 2, &m, NULL))
            return false;
        if (cur_eat(c, ':') && !cur_digits(c, 2, 2, &s, NULL))
            return false;
    }
    if (h > 15 || m > 59 || s > 59)
        return false;
    *seconds = sign * ((h * 60 + m) * 60 + s);
    return true;
}

/* ---- encoders (Postgres text -> Avro) ----------------------------------- */

static int encode_bool(cdc_buf *out, const char *text, size_t len, char *errstr,
                       size_t errstr_size)
{
    if (text_is(text, len, "t") || text_is(text, len, "true"))
        cdc_avro_put_bool(out, true);
    else if (text_is(text, len, "f") || text_is(text, len, "false"))
        cdc_avro_put_bool(out, false);
    else
        return bad_value(errstr, errstr_size, "boolean", text, len, "expected t or f");
    return 0;
}

static int encode_integer(cdc_buf *out, bool is_int, const char *text, size_t len,
                          char *errstr, size_t errstr_size)
{
    int64_t v;
    const char *what = is_int ? "int" : "bigint";
    if (!parse_int64(text, len, &v))
        return bad_value(errstr, errstr_size, what, text, len, "not a 64-bit integer");
    if (is_int && (v < INT32_MIN || v > INT32_MAX))
        return bad_value(errstr, errstr_size, what, text, len, "out of range for int");
    cdc_avro_put_long(out, v);
    return 0;
}

/*
 * float4/float8 text: NaN, Infinity, -Infinity, or a decimal with optional
 * exponent. strtod/strtof alone would also take hex floats, "inf", leading
 * blanks and "nan(...)", none of which Postgres prints, so the characters
 * are checked first.
 */
static int encode_floating(cdc_buf *out, bool is_float, const char *text, size_t len,
                           char *errstr, size_t errstr_size)
{
    const char *what = is_float ? "real" : "double precision";
    char tmp[80];
    double d = 0;
    float f = 0;

    if (text_is(text, len, "NaN")) {
        d = NAN;
        f = NAN;
    } else if (text_is(text, len, "Infinity")) {
        d = INFINITY;
        f = INFINITY;
    } else if (text_is(text, len, "-Infinity")) {
        d = -INFINITY;
        f = -INFINITY;
    } else {
        if (len == 0 || len >= sizeof tmp)
            return bad_value(errstr, errstr_size, what, text, len, "bad length");
        bool digit = false;
        for (size_t i = 0; i < len; i++) {
            char ch = text[i];
            digit |= is_digit(ch);
            if (!is_digit(ch) && ch != '-' && ch != '+' && ch != '.' && ch != 'e' && ch != 'E')
                return bad_value(errstr, errstr_size, what, text, len, "not a number");
        }
        if (!digit)
            return bad_value(errstr, errstr_size, what, text, len, "not a number");
        memcpy(tmp, text, len);
        tmp[len] = '\0';
        char *endp;
        errno = 0;
        if (is_float)
            f = strtof(tmp, &endp);
        else
            d = strtod(tmp, &endp);
        if (endp != tmp + len)
            return bad_value(errstr, errstr_size, what, text, len, "not a number");
        /* Like float4in/float8in: underflow to a denormal is fine, a result
         * of zero or infinity from a nonzero finite text is not. */
        double r = is_float ? (double)f : d;
        if (errno == ERANGE && (r == 0.0 || isinf(r)))
            return bad_value(errstr, errstr_size, what, text, len, "out of range");
    }
    if (is_float)
        cdc_avro_put_float(out, f);
    else
        cdc_avro_put_double(out, d);
    return 0;
}

static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* bytea_output=hex: "\x" then two hex digits per byte. */
static int encode_bytea(cdc_buf *out, const char *text, size_t len, char *errstr,
                        size_t errstr_size)
{
    if (len < 2 || text[0] != '\\' || text[1] != 'x')
        return bad_value(errstr, errstr_size, "bytea", text, len, "expected \\x hex format");
    if ((len - 2) % 2 != 0)
        return bad_value(errstr, errstr_size, "bytea", text, len, "odd number of hex digits");
    for (size_t i = 2; i < len; i++)
        if (hex_value(text[i]) < 0)
            return bad_value(errstr, errstr_size, "bytea", text, len, "bad hex digit");

    size_t n = (len - 2) / 2;
    cdc_avro_put_long(out, (int64_t)n);
    cdc_buf_reserve(out, n);
    for (size_t i = 0; i < n; i++)
        out->data[out->len++] =
            (uint8_t)(hex_value(text[2 + 2 * i]) << 4 | hex_value(text[3 + 2 * i]));
    return 0;
}

/*
 * Arbitrary-precision unsigned integers as little-endian base-2^32 limbs:
 * just multiply-add and divide-by-small, which is all decimal <-> binary
 * conversion needs.
 */
typedef struct bigmag {
    uint32_t *limb;
    size_t n;
} bigmag;

static void mag_muladd(bigmag *m, uint32_t mul, uint32_t add)
{
    uint64_t carry = add;
    for (size_t i = 0; i < m->n; i++) {
        uint64_t x = (uint64_t)m->limb[i] * mul + carry;
        m->limb[i] = (uint32_t)x;
        carry = x >> 32;
    }
    if (carry)
        m->limb[m->n++] = (uint32_t)carry; /* caller sized limb[] */
}

static uint32_t mag_divmod(bigmag *m, uint32_t div)
{
    uint64_t rem = 0;
    for (size_t i = m->n; i-- > 0;) {
        uint64_t x = (rem << 32) | m->limb[i];
        m->limb[i] = (uint32_t)(x / div);
        rem = x % div;
    }
    while (m->n > 0 && m->limb[m->n - 1] == 0)
        m->n--;
    return (uint32_t)rem;
}

/*
 * Avro decimal: the unscaled integer (value * 10^scale) as big-endian two's
 * complement in the fewest bytes that keep the sign bit right, e.g.
 *   0 -> 00    127 -> 7F    128 -> 00 80    -1 -> FF    -129 -> FF 7F
 */
static void put_twos_complement(cdc_buf *out, const bigmag *m, bool neg)
{
    size_t nb = m->n * 4 + 1; /* one spare byte for the sign */
    uint8_t small[64];
    uint8_t *be = nb <= sizeof small ? small : cdc_xcalloc(nb, 1);
    memset(be, 0, nb);

    for (size_t i = 0; i < m->n; i++)
        for (int k = 0; k < 4; k++)
            be[nb - 1 - (4 * i + (size_t)k)] = (uint8_t)(m->limb[i] >> (8 * k));
    if (neg) {
        unsigned carry = 1;
        for (size_t i = nb; i-- > 0;) {
            unsigned x = (uint8_t)~be[i] + carry;
            be[i] = (uint8_t)x;
            carry = x >> 8;
        }
    }
    size_t start = 0;
    while (nb - start > 1 &&
           ((be[start] == 0x00 && !(be[start + 1] & 0x80)) ||
            (be[start] == 0xff && (be[start + 1] & 0x80))))
        start++;
    cdc_avro_put_bytes(out, be + start, nb - start);
    if (be != small)
        free(be);
}

/*
 * numeric text: [-]digits[.digits], exactly as numeric_out prints it (no
 * exponent, no '+', no blanks). Fewer fraction digits than the scale are
 * padded; more would lose digits and are refused, as are values wider than
 * the declared precision.
 */
static int encode_decimal(cdc_buf *out, const cdc_coltype *t, const char *text, size_t len,
                          char *errstr, size_t errstr_size)
{
    const char *what = "numeric";
    size_t i = 0, int_start, int_len, frac_start = 0, frac_len = 0;
    bool neg = false;
    int rc = -1;
    char *digits = NULL;
    bigmag m = {NULL, 0};

    if (text_is(text, len, "NaN") || text_is(text, len, "Infinity") ||
        text_is(text, len, "-Infinity"))
        return bad_value(errstr, errstr_size, what, text, len,
                         "cannot be represented as an Avro decimal");
    if (t->precision < 1 || t->precision > NUMERIC_MAX_PRECISION || t->scale < 0 ||
        t->scale > t->precision)
        return set_err(errstr, errstr_size, "invalid decimal type (%d,%d)", t->precision,
                       t->scale);
    if (len > 0 && text[0] == '-') {
        neg = true;
        i = 1;
    }
    int_start = i;
    while (i < len && is_digit(text[i]))
        i++;
    int_len = i - int_start;
    if (i < len && text[i] == '.') {
        frac_start = ++i;
        while (i < len && is_digit(text[i]))
            i++;
        frac_len = i - frac_start;
        if (frac_len == 0)
            return bad_value(errstr, errstr_size, what, text, len, "no digits after '.'");
    }
    if (int_len == 0 || i != len)
        return bad_value(errstr, errstr_size, what, text, len, "not a plain decimal number");
    if (frac_len > (size_t)t->scale)
        return bad_value(errstr, errstr_size, what, text, len,
                         "more fraction digits than the column scale");

    /* Unscaled digits: integer part without leading zeros, fraction, padding. */
    while (int_len > 1 && text[int_start] == '0') {
        int_start++;
        int_len--;
    }
    size_t nd = int_len + (size_t)t->scale;
    digits = cdc_xmalloc(nd + 1);
    memcpy(digits, text + int_start, int_len);
    if (frac_len)
        memcpy(digits + int_len, text + frac_start, frac_len);
    memset(digits + int_len + frac_len, '0', (size_t)t->scale - frac_len);

    size_t first = 0;
    while (first < nd - 1 && digits[first] == '0')
        first++;
    if (nd - first > (size_t)t->precision) {
        bad_value(errstr, errstr_size, what, text, len, "exceeds the column precision");
        goto done;
    }

    /* Nine decimal digits at a time fit one 32-bit multiply-add. */
    m.limb = cdc_xcalloc(nd / 9 + 2, sizeof *m.limb);
    for (size_t k = first; k < nd;) {
        size_t chunk = (nd - k) % 9 ? (nd - k) % 9 : 9;
        uint32_t v = 0, mul = 1;
        for (size_t j = 0; j < chunk; j++, k++) {
            v = v * 10 + (uint32_t)(digits[k] - '0');
            mul *= 10;
        }
        mag_muladd(&m, mul, v);
    }
    put_twos_complement(out, &m, neg);
    rc = 0;
done:
    free(m.limb);
    free(digits);
    return rc;
}

static int encode_date(cdc_buf *out, const char *text, size_t len, char *errstr,
                       size_t errstr_size)
{
    cursor c = {text, text + len};
    int64_t year, days;
    int month, day;

    if (text_is(text, len, "infinity")) {
        cdc_avro_put_int(out, INT32_MAX);
        return 0;
    }
    if (text_is(text, len, "-infinity")) {
        cdc_avro_put_int(out, INT32_MIN);
        return 0;
    }
    if (!parse_ymd(&c, &year, &month, &day))
        return bad_value(errstr, errstr_size, "date", text, len, "expected YYYY-MM-DD [BC]");
    bool bc = cur_eat_str(&c, " BC");
    if (c.p != c.end)
        return bad_value(errstr, errstr_size, "date", text, len, "trailing characters");
    if (!ymd_to_days(year, month, day, bc, &days))
        return bad_value(errstr, errstr_size, "date", text, len, "no such day");
    /* The extremes stand for the infinities. */
    if (days <= INT32_MIN || days >= INT32_MAX)
        return bad_value(errstr, errstr_size, "date", text, len, "out of range");
    cdc_avro_put_int(out, (int32_t)days);
    return 0;
}

static int encode_time(cdc_buf *out, const char *text, size_t len, char *errstr,
                       size_t errstr_size)
{
    cursor c = {text, text + len};
    int64_t micros;
    if (!parse_hms(&c, &micros) || c.p != c.end)
        return bad_value(errstr, errstr_size, "time", text, len, "expected HH:MM:SS[.ffffff]");
    cdc_avro_put_long(out, micros);
    return 0;
}

/*
 * timestamp:   YYYY-MM-DD HH:MM:SS[.ffffff][ BC]
 * timestamptz: YYYY-MM-DD HH:MM:SS[.ffffff]+HH[:MM[:SS]][ BC]
 * Postgres puts the BC marker after the offset. The result is micros since
 * 1970-01-01 00:00 (UTC for timestamptz: local minus the offset).
 */
static int encode_timestamp(cdc_buf *out, bool with_tz, const char *text, size_t len,
                            char *errstr, size_t errstr_size)
{
    const char *what = with_tz ? "timestamptz" : "timestamp";
    cursor c = {text, text + len};
    int64_t year, days, tod, offset = 0, v;
    int month, day;

    if (text_is(text, len, "infinity")) {
        cdc_avro_put_long(out, INT64_MAX);
        return 0;
    }
    if (text_is(text, len, "-infinity")) {
        cdc_avro_put_long(out, INT64_MIN);
        return 0;
    }
    if (!parse_ymd(&c, &year, &month, &day) || !cur_eat(&c, ' ') || !parse_hms(&c, &tod))
        return bad_value(errstr, errstr_size, what, text, len,
                         "expected YYYY-MM-DD HH:MM:SS[.ffffff]");
    if (with_tz && !parse_offset(&c, &offset))
        return bad_value(errstr, errstr_size, what, text, len, "missing or bad UTC offset");
    bool bc = cur_eat_str(&c, " BC");
    if (c.p != c.end)
        return bad_value(errstr, errstr_size, what, text, len, "trailing characters");
    if (!ymd_to_days(year, month, day, bc, &days))
        return bad_value(errstr, errstr_size, what, text, len, "no such day");
    if (__builtin_mul_overflow(days, USECS_PER_DAY, &v) || __builtin_add_overflow(v, tod, &v) ||
        __builtin_sub_overflow(v, offset * USECS_PER_SEC, &v) || v == INT64_MAX ||
        v == INT64_MIN)
        return bad_value(errstr, errstr_size, what, text, len,
                         "out of range for 64-bit microseconds since 1970");
    cdc_avro_put_long(out, v);
    return 0;
}

int cdc_pgtype_encode(cdc_buf *out, const cdc_coltype *t, const char *text, size_t len,
                      char *errstr, size_t errstr_size)
{
    switch (t->conv) {
    case CDC_CONV_STRING:
    case CDC_CONV_UUID:
        cdc_avro_put_string(out, text, len);
        return 0;
    case CDC_CONV_BOOL: return encode_bool(out, text, len, errstr, errstr_size);
    case CDC_CONV_INT: return encode_integer(out, true, text, len, errstr, errstr_size);
    case CDC_CONV_LONG: return encode_integer(out, false, text, len, errstr, errstr_size);
    case CDC_CONV_FLOAT: return encode_floating(out, true, text, len, errstr, errstr_size);
    case CDC_CONV_DOUBLE: return encode_floating(out, false, text, len, errstr, errstr_size);
    case CDC_CONV_BYTES: return encode_bytea(out, text, len, errstr, errstr_size);
    case CDC_CONV_DECIMAL: return encode_decimal(out, t, text, len, errstr, errstr_size);
    case CDC_CONV_DATE: return encode_date(out, text, len, errstr, errstr_size);
    case CDC_CONV_TIME: return encode_time(out, text, len, errstr, errstr_size);
    case CDC_CONV_TIMESTAMP:
        return encode_timestamp(out, false, text, len, errstr, errstr_size);
    case CDC_CONV_TIMESTAMPTZ:
        return encode_timestamp(out, true, text, len, errstr, errstr_size);
    }
    return set_err(errstr, errstr_size, "unknown conversion %d", (int)t->conv);
}

/* ---- decoders (Avro -> Postgres input text) ------------------------------ */

static int truncated(char *errstr, size_t errstr_size, const char *what)
{
    return set_err(errstr, errstr_size, "truncated or invalid Avro %s value", what);
}

/*
 * Shortest text that reads back to the same bits, so the target stores
 * exactly the source value; "%.17g" would do but prints 0.1 as
 * 0.10000000000000001.
 */
static void put_double_text(cdc_buf *out, double v)
{
    char tmp[40];
    if (isnan(v)) {
        cdc_buf_puts(out, "NaN");
        return;
    }
    if (isinf(v)) {
        cdc_buf_puts(out, v > 0 ? "Infinity" : "-Infinity");
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    cdc_buf_puts(out, tmp);
}

static void put_float_text(cdc_buf *out, float v)
{
    char tmp[40];
    if (isnan(v)) {
        cdc_buf_puts(out, "NaN");
        return;
    }
    if (isinf(v)) {
        cdc_buf_puts(out, v > 0 ? "Infinity" : "-Infinity");
        return;
    }
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, (double)v);
        if (strtof(tmp, NULL) == v)
            break;
    }
    cdc_buf_puts(out, tmp);
}

/*
 * Text formatting for the decoders. These run for nearly every column of
 * every event cdc-apply reads, so they write digits directly instead of
 * going through printf; the output is byte for byte what the printf formats
 * in the comments would give.
 */

/* The digits of v, written backwards so they end just before `end`;
 * returns where they start. */
static char *u64_text(char *end, uint64_t v)
{
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}

/* Number of decimal digits of v. */
static int u64_ndigits(uint64_t v)
{
    int n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

/* "%0*" PRIu64 at p; returns the end. */
static char *fmt_uint(char *p, uint64_t v, int width)
{
    int n = u64_ndigits(v);
    while (n < width) {
        *p++ = '0';
        width--;
    }
    u64_text(p + n, v);
    return p + n;
}

/* "%02d" for 0 <= v <= 99 at p; returns the end. */
static char *fmt_2d(char *p, int v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
    return p + 2;
}

/* "%" PRId64 */
static void put_int_text(cdc_buf *out, int64_t v)
{
    uint64_t u = v < 0 ? ~(uint64_t)v + 1 : (uint64_t)v;
    size_t n = (size_t)u64_ndigits(u) + (v < 0);
    cdc_buf_reserve(out, n);
    char *p = (char *)out->data + out->len;
    if (v < 0)
        *p = '-';
    u64_text(p + n, u);
    out->len += n;
}

/* Room for the longest date or timestamp text: a seven-digit year (int32
 * days reach year 5881580), "-MM-DD HH:MM:SS.ffffff+00 BC". */
#define DATETIME_TEXT_MAX 48

/*
 * YYYY-MM-DD with the year as Postgres prints it ("%04" PRId64 "-%02d-%02d"
 * of the year counted from 1, so BC years are positive too) at p; returns
 * the end and sets *bc.
 */
static char *fmt_date(char *p, int64_t days, bool *bc)
{
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    *bc = y <= 0;
    p = fmt_uint(p, (uint64_t)(*bc ? 1 - y : y), 4);
    *p++ = '-';
    p = fmt_2d(p, m);
    *p++ = '-';
    return fmt_2d(p, d);
}

/* HH:MM:SS plus the fraction without trailing zeros, as Postgres prints it;
 * 0 <= micros <= USECS_PER_DAY. Returns the end. */
static char *fmt_time(char *p, int64_t micros)
{
    int secs = (int)(micros / USECS_PER_SEC);
    int frac = (int)(micros % USECS_PER_SEC);
    p = fmt_2d(p, secs / 3600);
    *p++ = ':';
    p = fmt_2d(p, secs / 60 % 60);
    *p++ = ':';
    p = fmt_2d(p, secs % 60);
    if (frac) {
        char f[6];
        int n = 6;
        for (int i = 5; i >= 0; i--, frac /= 10)
            f[i] = (char)('0' + frac % 10);
        while (n > 1 && f[n - 1] == '0')
            n--;
        *p++ = '.';
        memcpy(p, f, (size_t)n);
        p += n;
    }
    return p;
}

static char *fmt_str(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

/* A date that is not an infinity, with " BC" when it is one. */
static void put_date_text(cdc_buf *out, int32_t days)
{
    char tmp[DATETIME_TEXT_MAX];
    bool bc;
    char *e = fmt_date(tmp, days, &bc);
    if (bc)
        e = fmt_str(e, " BC", 3);
    cdc_buf_append(out, tmp, (size_t)(e - tmp));
}

static void put_time_text(cdc_buf *out, int64_t micros)
{
    char tmp[DATETIME_TEXT_MAX];
    char *e = fmt_time(tmp, micros);
    cdc_buf_append(out, tmp, (size_t)(e - tmp));
}

/* Micros since 1970 (not an infinity) as "date time[+00][ BC]". */
static void put_timestamp_text(cdc_buf *out, int64_t micros, bool with_tz)
{
    int64_t days = micros / USECS_PER_DAY, tod = micros % USECS_PER_DAY;
    if (tod < 0) {
        tod += USECS_PER_DAY;
        days--;
    }
    char tmp[DATETIME_TEXT_MAX];
    bool bc;
    char *e = fmt_date(tmp, days, &bc);
    *e++ = ' ';
    e = fmt_time(e, tod);
    /* An explicit +00 pins the instant whatever the target's TimeZone;
     * Postgres wants BC after the offset. */
    if (with_tz)
        e = fmt_str(e, "+00", 3);
    if (bc)
        e = fmt_str(e, " BC", 3);
    cdc_buf_append(out, tmp, (size_t)(e - tmp));
}

/*
 * The unscaled value's decimal digits: big-endian two's complement in, the
 * magnitude's digits out (written backwards ending at `end`, as u64_text),
 * and whether it is negative. Up to 8 bytes fit a uint64_t, which is every
 * numeric(18,s) and below; longer values go through base-10^9 division.
 */
static char *decimal_digits(char *end, const uint8_t *data, size_t len, bool *neg)
{
    *neg = data[0] & 0x80;
    if (len <= 8) {
        uint64_t u = 0;
        for (size_t i = 0; i < len; i++)
            u = u << 8 | data[i];
        if (*neg && len < 8)
            u |= ~UINT64_C(0) << (8 * len); /* sign-extend */
        return u64_text(end, *neg ? ~u + 1 : u);
    }

    /* Magnitude as little-endian 32-bit limbs. */
    uint32_t limb[DECIMAL_MAX_BYTES / 4 + 1];
    bigmag m = {limb, len / 4 + 1};
    memset(limb, 0, m.n * sizeof *limb);
    unsigned carry = 1;
    for (size_t i = 0; i < len; i++) {
        unsigned x = data[len - 1 - i];
        if (*neg) {
            x = (uint8_t)~x + carry;
            carry = x >> 8;
        }
        limb[i / 4] |= (uint32_t)(uint8_t)x << (8 * (i % 4));
    }
    while (m.n > 0 && m.limb[m.n - 1] == 0)
        m.n--;

    /* Base 10^9 chunks, least significant first: every chunk but the most
     * significant one is zero-padded to nine digits. */
    char *s = end;
    do {
        uint32_t c = mag_divmod(&m, 1000000000u);
        char *e = s;
        s = u64_text(s, c);
        if (m.n > 0)
            while (e - s < 9)
                *--s = '0';
    } while (m.n > 0);
    return s;
}

static int decode_decimal(cdc_buf *out, const cdc_coltype *t, const uint8_t **p,
                          const uint8_t *end, char *errstr, size_t errstr_size)
{
    const uint8_t *q = *p, *data;
    size_t len;
    /* Each 9-digit chunk takes more than 29 bits of the magnitude (10^9 > 2^29). */
    char dec[(DECIMAL_MAX_BYTES * 8 / 29 + 2) * 9];

    if (cdc_avro_get_bytes(&q, end, &data, &len) != 0)
        return truncated(errstr, errstr_size, "decimal");
    if (len == 0)
        return set_err(errstr, errstr_size, "Avro decimal with no bytes");
    if (len > DECIMAL_MAX_BYTES)
        return set_err(errstr, errstr_size, "Avro decimal of %zu bytes is too large", len);

    bool neg;
    char *digits = decimal_digits(dec + sizeof dec, data, len, &neg);
    size_t nd = (size_t)(dec + sizeof dec - digits), scale = (size_t)t->scale;
    bool zero = nd == 1 && digits[0] == '0';
    if (!zero && t->precision > 0 && nd > (size_t)t->precision)
        return set_err(errstr, errstr_size, "Avro decimal has %zu digits, more than precision %d",
                       nd, t->precision);

    cdc_buf_reserve(out, nd + scale + 3);
    char *o = (char *)out->data + out->len;
    if (neg && !zero)
        *o++ = '-';
    if (nd <= scale) {
        *o++ = '0';
        *o++ = '.';
        memset(o, '0', scale - nd);
        o += scale - nd;
        o = fmt_str(o, digits, nd);
    } else {
        o = fmt_str(o, digits, nd - scale);
        if (scale) {
            *o++ = '.';
            o = fmt_str(o, digits + nd - scale, scale);
        }
    }
    out->len = (size_t)((uint8_t *)o - out->data);
    *p = q;
    return 0;
}

static int decode_bytes_like(cdc_buf *out, cdc_conv conv, const uint8_t **p, const uint8_t *end,
                             char *errstr, size_t errstr_size)
{
    static const char hex[] = "0123456789abcdef";
    const uint8_t *q = *p, *data;
    size_t len;

    if (cdc_avro_get_bytes(&q, end, &data, &len) != 0)
        return truncated(errstr, errstr_size, conv == CDC_CONV_BYTES ? "bytes" : "string");
    if (conv == CDC_CONV_BYTES) {
        cdc_buf_reserve(out, 2 + 2 * len);
        cdc_buf_puts(out, "\\x");
        for (size_t i = 0; i < len; i++) {
            out->data[out->len++] = (uint8_t)hex[data[i] >> 4];
            out->data[out->len++] = (uint8_t)hex[data[i] & 0xf];
        }
    } else {
        /* Postgres text cannot hold NUL; passing it on would truncate the
         * value silently in a C-string API. */
        if (memchr(data, '\0', len))
            return set_err(errstr, errstr_size, "Avro string contains a NUL byte");
        cdc_buf_append(out, data, len);
    }
    *p = q;
    return 0;
}

int cdc_pgtype_decode_text(cdc_buf *out, const cdc_coltype *t, const uint8_t **p,
                           const uint8_t *end, char *errstr, size_t errstr_size)
{
    const uint8_t *q = *p;
    int64_t l;
    int32_t i;
    bool b;
    float f;
    double d;

    switch (t->conv) {
    case CDC_CONV_STRING:
    case CDC_CONV_UUID:
    case CDC_CONV_BYTES:
        return decode_bytes_like(out, t->conv, p, end, errstr, errstr_size);
    case CDC_CONV_DECIMAL:
        return decode_decimal(out, t, p, end, errstr, errstr_size);
    case CDC_CONV_BOOL:
        if (cdc_avro_get_bool(&q, end, &b) != 0)
            return truncated(errstr, errstr_size, "boolean");
        cdc_buf_putc(out, b ? 't' : 'f');
        break;
    case CDC_CONV_INT:
        if (cdc_avro_get_int(&q, end, &i) != 0)
            return truncated(errstr, errstr_size, "int");
        put_int_text(out, i);
        break;
    case CDC_CONV_LONG:
        if (cdc_avro_get_long(&q, end, &l) != 0)
            return truncated(errstr, errstr_size, "long");
        put_int_text(out, l);
        break;
    case CDC_CONV_FLOAT:
        if (cdc_avro_get_float(&q, end, &f) != 0)
            return truncated(errstr, errstr_size, "float");
        put_float_text(out, f);
        break;
    case CDC_CONV_DOUBLE:
        if (cdc_avro_get_double(&q, end, &d) != 0)
            return truncated(errstr, errstr_size, "double");
        put_double_text(out, d);
        break;
    case CDC_CONV_DATE:
        if (cdc_avro_get_int(&q, end, &i) != 0)
            return truncated(errstr, errstr_size, "date");
        if (i == INT32_MAX)
            cdc_buf_puts(out, "infinity");
        else if (i == INT32_MIN)
            cdc_buf_puts(out, "-infinity");
        else
            put_date_text(out, i);
        break;
    case CDC_CONV_TIME:
        if (cdc_avro_get_long(&q, end, &l) != 0)
            return truncated(errstr, errstr_size, "time-micros");
        if (l < 0 || l > USECS_PER_DAY)
            return set_err(errstr, errstr_size, "time-micros %" PRId64 " outside 00:00..24:00",
                           l);
        put_time_text(out, l);
        break;
    case CDC_CONV_TIMESTAMP:
    case CDC_CONV_TIMESTAMPTZ:
        if (cdc_avro_get_long(&q, end, &l) != 0)
            return truncated(errstr, errstr_size, "timestamp");
        if (l == INT64_MAX) {
            cdc_buf_puts(out, "infinity");
        } else if (l == INT64_MIN) {
            cdc_buf_puts(out, "-infinity");
        } else {
            put_timestamp_text(out, l, t->conv == CDC_CONV_TIMESTAMPTZ);
        }
        break;
    default:
        return set_err(errstr, errstr_size, "unknown conversion %d", (int)t->conv);
    }
    *p = q;
    return 0;
}

/* ---- binary forms (COPY ... (FORMAT binary)) ---- */

/* Microseconds and days from 1970-01-01 (Avro) to 2000-01-01 (PostgreSQL). */
#define PG_EPOCH_DAYS 10957
#define PG_EPOCH_USECS (INT64_C(10957) * USECS_PER_DAY)

cdc_pgbin cdc_pgtype_bin_kind(const cdc_coltype *t, const char *pg_type)
{
    static const struct {
        cdc_conv conv;
        const char *type;
        bool prefix; /* type followed by a "(...)" typmod */
        cdc_pgbin kind;
    } kinds[] = {
        {CDC_CONV_BOOL, "boolean", false, CDC_BIN_BOOL},
        {CDC_CONV_INT, "smallint", false, CDC_BIN_INT2},
        {CDC_CONV_INT, "integer", false, CDC_BIN_INT4},
        {CDC_CONV_LONG, "bigint", false, CDC_BIN_INT8},
        {CDC_CONV_FLOAT, "real", false, CDC_BIN_FLOAT4},
        {CDC_CONV_DOUBLE, "double precision", false, CDC_BIN_FLOAT8},
        {CDC_CONV_DECIMAL, "numeric", true, CDC_BIN_NUMERIC},
        {CDC_CONV_DATE, "date", false, CDC_BIN_DATE},
        {CDC_CONV_TIME, "time without time zone", false, CDC_BIN_TIME},
        {CDC_CONV_TIMESTAMP, "timestamp without time zone", false, CDC_BIN_TIMESTAMP},
        {CDC_CONV_TIMESTAMPTZ, "timestamp with time zone", false, CDC_BIN_TIMESTAMP},
        {CDC_CONV_STRING, "text", false, CDC_BIN_TEXT},
        {CDC_CONV_STRING, "character varying", false, CDC_BIN_TEXT},
        {CDC_CONV_STRING, "character varying", true, CDC_BIN_TEXT},
        {CDC_CONV_STRING, "character", false, CDC_BIN_TEXT},
        {CDC_CONV_STRING, "character", true, CDC_BIN_TEXT},
        {CDC_CONV_BYTES, "bytea", false, CDC_BIN_BYTEA},
        {CDC_CONV_UUID, "uuid", false, CDC_BIN_UUID},
    };
    if (!pg_type)
        return CDC_BIN_NONE;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (kinds[i].conv != t->conv)
            continue;
        size_t n = strlen(kinds[i].type);
        if (strncmp(pg_type, kinds[i].type, n) != 0)
            continue;
        const char *rest = pg_type + n;
        /* A typmod is digits (and a comma) in parentheses, nothing after:
         * "time(3) with time zone" is another type. */
        if (kinds[i].prefix) {
            if (*rest++ != '(')
                continue;
            while ((*rest >= '0' && *rest <= '9') || *rest == ',')
                rest++;
            if (*rest++ != ')')
                continue;
        }
        if (*rest == '\0')
            return kinds[i].kind;
    }
    return CDC_BIN_NONE;
}

static void put_be(cdc_buf *out, uint64_t v, int bytes)
{
    cdc_buf_reserve(out, (size_t)bytes);
    for (int i = bytes - 1; i >= 0; i--)
        out->data[out->len++] = (uint8_t)(v >> (8 * i));
}

static int floor_div4(int a)
{
    return a >= 0 ? a / 4 : -((-a + 3) / 4);
}

/*
 * numeric's binary form: ndigits, weight, sign, dscale (16 bits each), then
 * ndigits base-10000 digits, most significant first; digit i is worth
 * 10000^(weight - i). Leading and trailing zero digits are left out.
 */
static int decode_numeric_bin(cdc_buf *out, const cdc_coltype *t, const uint8_t **p,
                              const uint8_t *end, char *errstr, size_t errstr_size)
{
    static const uint16_t pow10[4] = {1, 10, 100, 1000};
    const uint8_t *q = *p, *data;
    size_t len;
    char dec[(DECIMAL_MAX_BYTES * 8 / 29 + 2) * 9];
    uint16_t group[(sizeof dec + NUMERIC_MAX_PRECISION) / 4 + 3];

    if (cdc_avro_get_bytes(&q, end, &data, &len) != 0)
        return truncated(errstr, errstr_size, "decimal");
    if (len == 0)
        return set_err(errstr, errstr_size, "Avro decimal with no bytes");
    if (len > DECIMAL_MAX_BYTES)
        return set_err(errstr, errstr_size, "Avro decimal of %zu bytes is too large", len);
    if (t->scale < 0 || t->scale > NUMERIC_MAX_PRECISION)
        return set_err(errstr, errstr_size, "decimal scale %d out of range", t->scale);
    bool neg;
    char *digits = decimal_digits(dec + sizeof dec, data, len, &neg);
    int nd = (int)(dec + sizeof dec - digits), scale = t->scale;
    if (nd == 1 && digits[0] == '0') {
        put_be(out, 0, 2);
        put_be(out, 0, 2);
        put_be(out, 0x0000, 2);
        put_be(out, (uint64_t)scale, 2);
        *p = q;
        return 0;
    }
    if (t->precision > 0 && nd > t->precision)
        return set_err(errstr, errstr_size, "Avro decimal has %d digits, more than precision %d",
                       nd, t->precision);
    int top = nd - scale - 1; /* power of ten of the first digit */
    int weight = floor_div4(top);
    int ngroups = weight - floor_div4(-scale) + 1;
    memset(group, 0, (size_t)ngroups * sizeof *group);
    for (int k = 0; k < nd; k++) {
        int e = top - k, g = floor_div4(e);
        group[weight - g] = (uint16_t)(group[weight - g] + (digits[k] - '0') * pow10[e - 4 * g]);
    }
    while (ngroups > 0 && group[ngroups - 1] == 0)
        ngroups--;
    put_be(out, (uint64_t)ngroups, 2);
    put_be(out, (uint64_t)(uint16_t)(int16_t)weight, 2);
    put_be(out, neg ? 0x4000 : 0x0000, 2);
    put_be(out, (uint64_t)scale, 2);
    for (int i = 0; i < ngroups; i++)
        put_be(out, group[i], 2);
    *p = q;
    return 0;
}

int cdc_pgtype_decode_binary(cdc_buf *out, const cdc_coltype *t, cdc_pgbin kind,
                             const uint8_t **p, const uint8_t *end, char *errstr,
                             size_t errstr_size)
{
    const uint8_t *q = *p, *data;
    size_t len;
    int64_t l;
    int32_t i;
    bool b;
    float f;
    double d;
    uint64_t bits;

    switch (kind) {
    case CDC_BIN_NUMERIC:
        return decode_numeric_bin(out, t, p, end, errstr, errstr_size);
    case CDC_BIN_BOOL:
        if (cdc_avro_get_bool(&q, end, &b) != 0)
            return truncated(errstr, errstr_size, "boolean");
        put_be(out, b, 1);
        break;
    case CDC_BIN_INT2:
    case CDC_BIN_INT4:
        if (cdc_avro_get_int(&q, end, &i) != 0)
            return truncated(errstr, errstr_size, "int");
        if (kind == CDC_BIN_INT2 && (i < INT16_MIN || i > INT16_MAX))
            return set_err(errstr, errstr_size, "value %" PRId32 " is out of range for smallint",
                           i);
        put_be(out, (uint64_t)(uint32_t)i, kind == CDC_BIN_INT2 ? 2 : 4);
        break;
    case CDC_BIN_INT8:
        if (cdc_avro_get_long(&q, end, &l) != 0)
            return truncated(errstr, errstr_size, "long");
        put_be(out, (uint64_t)l, 8);
        break;
    case CDC_BIN_FLOAT4:
        if (cdc_avro_get_float(&q, end, &f) != 0)
            return truncated(errstr, errstr_size, "float");
        uint32_t fb;
        memcpy(&fb, &f, sizeof fb);
        put_be(out, fb, 4);
        break;
    case CDC_BIN_FLOAT8:
        if (cdc_avro_get_double(&q, end, &d) != 0)
            return truncated(errstr, errstr_size, "double");
        memcpy(&bits, &d, sizeof bits);
        put_be(out, bits, 8);
        break;
    case CDC_BIN_DATE:
        if (cdc_avro_get_int(&q, end, &i) != 0)
            return truncated(errstr, errstr_size, "date");
        /* infinity and -infinity are INT32_MAX and INT32_MIN in both. */
        if (i != INT32_MAX && i != INT32_MIN) {
            if (i < INT32_MIN + PG_EPOCH_DAYS + 1)
                return set_err(errstr, errstr_size, "date %" PRId32 " is out of range", i);
            i -= PG_EPOCH_DAYS;
        }
        put_be(out, (uint64_t)(uint32_t)i, 4);
        break;
    case CDC_BIN_TIME:
        if (cdc_avro_get_long(&q, end, &l) != 0)
            return truncated(errstr, errstr_size, "time-micros");
        if (l < 0 || l > USECS_PER_DAY)
            return set_err(errstr, errstr_size, "time-micros %" PRId64 " outside 00:00..24:00",
                           l);
        put_be(out, (uint64_t)l, 8);
        break;
    case CDC_BIN_TIMESTAMP:
        if (cdc_avro_get_long(&q, end, &l) != 0)
            return truncated(errstr, errstr_size, "timestamp");
        /* infinity and -infinity are INT64_MAX and INT64_MIN in both. */
        if (l != INT64_MAX && l != INT64_MIN) {
            if (l < INT64_MIN + PG_EPOCH_USECS + 1)
                return set_err(errstr, errstr_size, "timestamp %" PRId64 " is out of range", l);
            l -= PG_EPOCH_USECS;
        }
        put_be(out, (uint64_t)l, 8);
        break;
    case CDC_BIN_TEXT:
    case CDC_BIN_BYTEA:
        if (cdc_avro_get_bytes(&q, end, &data, &len) != 0)
            return truncated(errstr, errstr_size, kind == CDC_BIN_TEXT ? "string" : "bytes");
        if (kind == CDC_BIN_TEXT && memchr(data, '\0', len))
            return set_err(errstr, errstr_size, "Avro string contains a NUL byte");
        cdc_buf_append(out, data, len);
        break;
    case CDC_BIN_UUID: {
        if (cdc_avro_get_bytes(&q, end, &data, &len) != 0)
            return truncated(errstr, errstr_size, "uuid");
        /* 8-4-4-4-12 hexadecimal digits, as uuid_out writes them. */
        uint8_t u[16];
        size_t k = 0;
        bool ok = len == 36;
        for (size_t j = 0; ok && j < 36; j++) {
            if (j == 8 || j == 13 || j == 18 || j == 23) {
                ok = data[j] == '-';
                continue;
            }
            int h = hex_value((char)data[j]);
            ok = h >= 0;
            if (ok) {
                u[k / 2] = (uint8_t)(k % 2 ? u[k / 2] | h : h << 4);
                k++;
            }
        }
        if (!ok)
            return set_err(errstr, errstr_size, "uuid %.*s is not in its canonical form",
                           (int)(len < 40 ? len : 40), (const char *)data);
        cdc_buf_append(out, u, sizeof u);
        break;
    }
    default:
        return set_err(errstr, errstr_size, "no binary form for conversion %d", (int)t->conv);
    }
    *p = q;
    return 0;
}

static uint64_t get_be(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v = v << 8 | p[i];
    return v;
}

/*
 * numeric's binary form (see decode_numeric_bin) to an Avro decimal of the
 * column's scale. Up to 36 digits the unscaled value is computed in 128
 * bits; beyond, the value is written as numeric_out would print it and
 * takes the text path, so both give the same bytes.
 */
static int encode_numeric_bin(cdc_buf *out, const cdc_coltype *t, const uint8_t *data,
                              size_t len, char *errstr, size_t errstr_size)
{
    if (len < 8)
        return set_err(errstr, errstr_size, "numeric binary value of %zu bytes", len);
    int n = (int)get_be(data, 2), weight = (int16_t)get_be(data + 2, 2);
    unsigned sign = (unsigned)get_be(data + 4, 2);
    int dscale = (int)get_be(data + 6, 2);
    if (len != 8 + 2 * (size_t)n)
        return set_err(errstr, errstr_size, "numeric binary value of %zu bytes for %d digits",
                       len, n);
    if (sign == 0xC000 || sign == 0xD000 || sign == 0xF000)
        return set_err(errstr, errstr_size, "numeric %s cannot be represented as an Avro decimal",
                       sign == 0xC000 ? "NaN" : sign == 0xD000 ? "Infinity" : "-Infinity");
    if (sign != 0x0000 && sign != 0x4000)
        return set_err(errstr, errstr_size, "numeric binary value with sign %04x", sign);
    if (t->precision < 1 || t->precision > NUMERIC_MAX_PRECISION || t->scale < 0 ||
        t->scale > t->precision)
        return set_err(errstr, errstr_size, "invalid decimal type (%d,%d)", t->precision,
                       t->scale);
    const uint8_t *d = data + 8;
    for (int i = 0; i < n; i++)
        if (get_be(d + 2 * i, 2) > 9999)
            return set_err(errstr, errstr_size, "numeric binary digit out of range");
    bool neg = sign == 0x4000;

    /* digits * 10000^(n - 1 - weight) = the value; f decimal places. */
    int f = 4 * (n - 1 - weight);
    if (n <= 9 && t->scale - f <= 38 && f - t->scale <= 38) {
        unsigned __int128 acc = 0, p10 = 1;
        for (int i = 0; i < n; i++)
            acc = acc * 10000 + get_be(d + 2 * i, 2);
        int shift = t->scale - f;
        for (int k = 0; k < (shift < 0 ? -shift : shift); k++)
            p10 *= 10;
        bool fits = true;
        if (shift >= 0) {
            fits = acc <= (((unsigned __int128)1 << 126) / p10);
            acc *= p10;
        } else if (acc % p10 != 0) {
            return set_err(errstr, errstr_size,
                           "numeric value has more fraction digits than the column scale");
        } else {
            acc /= p10;
        }
        if (fits) {
            unsigned __int128 limit = 1;
            for (int k = 0; k < t->precision && k < 38; k++)
                limit *= 10;
            if (t->precision <= 38 && acc >= limit)
                return set_err(errstr, errstr_size, "numeric value exceeds the column precision");
            uint32_t limb[4];
            bigmag m = {limb, 0};
            for (; acc; acc >>= 32)
                limb[m.n++] = (uint32_t)acc;
            put_twos_complement(out, &m, neg && m.n > 0);
            return 0;
        }
    }

    /* [-]integer digits[.dscale fraction digits], as numeric_out prints it. */
    cdc_buf text;
    cdc_buf_init(&text);
    if (neg)
        cdc_buf_putc(&text, '-');
    if (weight < 0) {
        cdc_buf_putc(&text, '0');
    } else {
        for (int i = 0; i <= weight; i++) {
            unsigned g = i < n ? (unsigned)get_be(d + 2 * i, 2) : 0;
            cdc_buf_printf(&text, i == 0 ? "%u" : "%04u", g);
        }
    }
    if (dscale > 0) {
        cdc_buf_putc(&text, '.');
        for (int k = -1, left = dscale; left > 0; k--) {
            int i = weight - k;
            unsigned g = i >= 0 && i < n ? (unsigned)get_be(d + 2 * i, 2) : 0;
            char four[4] = {(char)('0' + g / 1000), (char)('0' + g / 100 % 10),
                            (char)('0' + g / 10 % 10), (char)('0' + g % 10)};
            int take = left < 4 ? left : 4;
            cdc_buf_append(&text, four, (size_t)take);
            left -= take;
        }
    }
    int rc = encode_decimal(out, t, (const char *)text.data, text.len, errstr, errstr_size);
    cdc_buf_free(&text);
    return rc;
}

static int bin_size(size_t len, size_t want, const char *what, char *errstr, size_t errstr_size)
{
    if (len == want)
        return 0;
    return set_err(errstr, errstr_size, "%s binary value of %zu bytes, expected %zu", what, len,
                   want);
}

int cdc_pgtype_encode_binary(cdc_buf *out, const cdc_coltype *t, cdc_pgbin kind,
                             const uint8_t *data, size_t len, char *errstr, size_t errstr_size)
{
    int64_t v;
    switch (kind) {
    case CDC_BIN_BOOL:
        if (bin_size(len, 1, "boolean", errstr, errstr_size) != 0)
            return -1;
        cdc_avro_put_bool(out, data[0] != 0);
        return 0;
    case CDC_BIN_INT2:
        if (bin_size(len, 2, "smallint", errstr, errstr_size) != 0)
            return -1;
        cdc_avro_put_long(out, (int16_t)get_be(data, 2));
        return 0;
    case CDC_BIN_INT4:
        if (bin_size(len, 4, "integer", errstr, errstr_size) != 0)
            return -1;
        cdc_avro_put_long(out, (int32_t)get_be(data, 4));
        return 0;
    case CDC_BIN_INT8:
        if (bin_size(len, 8, "bigint", errstr, errstr_size) != 0)
            return -1;
        cdc_avro_put_long(out, (int64_t)get_be(data, 8));
        return 0;
    case CDC_BIN_FLOAT4: {
        if (bin_size(len, 4, "real", errstr, errstr_size) != 0)
            return -1;
        uint32_t bits = (uint32_t)get_be(data, 4);
        float f;
        memcpy(&f, &bits, sizeof f);
        cdc_avro_put_float(out, isnan(f) ? NAN : f); /* PostgreSQL prints every NaN as NaN */
        return 0;
    }
    case CDC_BIN_FLOAT8: {
        if (bin_size(len, 8, "double precision", errstr, errstr_size) != 0)
            return -1;
        uint64_t bits = get_be(data, 8);
        double dv;
        memcpy(&dv, &bits, sizeof dv);
        cdc_avro_put_double(out, isnan(dv) ? NAN : dv);
        return 0;
    }
    case CDC_BIN_NUMERIC:
        return encode_numeric_bin(out, t, data, len, errstr, errstr_size);
    case CDC_BIN_DATE: {
        if (bin_size(len, 4, "date", errstr, errstr_size) != 0)
            return -1;
        int32_t days = (int32_t)get_be(data, 4);
        if (days == INT32_MAX || days == INT32_MIN) { /* infinity, -infinity */
            cdc_avro_put_int(out, days);
            return 0;
        }
        v = (int64_t)days + PG_EPOCH_DAYS;
        if (v <= INT32_MIN || v >= INT32_MAX)
            return set_err(errstr, errstr_size, "date out of range");
        cdc_avro_put_int(out, (int32_t)v);
        return 0;
    }
    case CDC_BIN_TIME:
        if (bin_size(len, 8, "time", errstr, errstr_size) != 0)
            return -1;
        cdc_avro_put_long(out, (int64_t)get_be(data, 8));
        return 0;
    case CDC_BIN_TIMESTAMP:
        if (bin_size(len, 8, "timestamp", errstr, errstr_size) != 0)
            return -1;
        v = (int64_t)get_be(data, 8);
        if (v != INT64_MAX && v != INT64_MIN &&
            (__builtin_add_overflow(v, PG_EPOCH_USECS, &v) || v == INT64_MAX || v == INT64_MIN))
            return set_err(errstr, errstr_size,
                           "timestamp out of range for 64-bit microseconds since 1970");
        cdc_avro_put_long(out, v);
        return 0;
    case CDC_BIN_TEXT:
        cdc_avro_put_string(out, (const char *)data, len);
        return 0;
    case CDC_BIN_BYTEA:
        cdc_avro_put_bytes(out, data, len);
        return 0;
    case CDC_BIN_UUID: {
        if (bin_size(len, 16, "uuid", errstr, errstr_size) != 0)
            return -1;
        static const char hex[] = "0123456789abcdef";
        char u[36];
        for (int i = 0, k = 0; i < 16; i++) {
            if (i == 4 || i == 6 || i == 8 || i == 10)
                u[k++] = '-';
            u[k++] = hex[data[i] >> 4];
            u[k++] = hex[data[i] & 0xf];
        }
        cdc_avro_put_string(out, u, sizeof u);
        return 0;
    }
    case CDC_BIN_NONE:
        break;
    }
    return set_err(errstr, errstr_size, "no binary form for conversion %d", (int)t->conv);
}
