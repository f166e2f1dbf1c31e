/* Line-oriented logging to stderr (see cdc/log.h). */
#include "cdc/log.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

static const char *log_program = "cdc";
static volatile cdc_log_level log_level = CDC_LOG_INFO;
static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

void cdc_log_init(const char *program)
{
    log_program = program;
}

void cdc_log_set_level(cdc_log_level level)
{
    log_level = level;
}

cdc_log_level cdc_log_get_level(void)
{
    return log_level;
}

int cdc_log_parse_level(const char *s, cdc_log_level *out)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, names[i]) == 0) {
            *out = (cdc_log_level)i;
            return 0;
        }
    }
    return -1;
}

void cdc_log(cdc_log_level level, const char *fmt, ...)
{
    if (level > log_level)
        return;
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03dZ %-5s %s: %s\n", ts, (int)(tv.tv_usec / 1000), level_names[level],
            log_program, msg);
}

/* Copy src[0..n) into the output cursor, keeping room for the NUL. */
static void put(char **o, char *end, const char *src, size_t n)
{
    while (n-- > 0 && *o < end - 1)
        *(*o)++ = *src++;
}

static void redact_uri(const char *s, char *out, size_t out_size)
{
    char *o = out, *end = out + out_size;
    const char *scheme_end = strstr(s, "://");
    const char *p = scheme_end + 3;
    put(&o, end, s, (size_t)(p - s));
    /* userinfo ends at the last '@' before the first '/', '?' or end. */
    size_t host_part = strcspn(p, "/?");
    const char *at = NULL;
    for (const char *q = p; q < p + host_part; q++)
        if (*q == '@')
            at = q;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            put(&o, end, p, (size_t)(colon - p) + 1);
            put(&o, end, "********", 8);
            p = at;
        }
    }
    /* Query parameters: password=... */
    while (*p) {
        if ((p[-1] == '?' || p[-1] == '&') && strncasecmp(p, "password=", 9) == 0) {
            put(&o, end, p, 9);
            put(&o, end, "********", 8);
            p += 9;
            p += strcspn(p, "&");
            continue;
        }
        put(&o, end, p, 1);
        p++;
    }
    *o = '\0';
}

void cdc_redact_conninfo(const char *s, char *out, size_t out_size)
{
    if (out_size == 0)
        return;
    if (!s) {
        out[0] = '\0';
        return;
    }
    if (strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0) {
        redact_uri(s, out, out_size);
        return;
    }
    /* key = value form; values may be single-quoted with backslash escapes. */
    char *o = out, *end = out + out_size;
    const char *p = s;
    while (*p) {
        const char *ws = p;
        while (isspace((unsigned char)*p))
            p++;
        put(&o, end, ws, (size_t)(p - ws));
        if (!*p)
            break;
        const char *key = p;
        while (*p && *p != '=' && !isspace((unsigned char)*p))
            p++;
        size_t keylen = (size_t)(p - key);
        put(&o, end, key, keylen);
        const char *eq = p;
        while (isspace((unsigned char)*p))
            p++;
        if (*p != '=') {
            put(&o, end, eq, (size_t)(p - eq));
            continue;
        }
        p++;
        while (isspace((unsigned char)*p))
            p++;
        put(&o, end, eq, (size_t)(p - eq));
        const char *val = p;
        if (*p == '\'') {
            p++;
            while (*p && *p != '\'') {
                if (*p == '\\' && p[1])
                    p++;
                p++;
            }
            if (*p == '\'')
                p++;
        } else {
            while (*p && !isspace((unsigned char)*p))
                p++;
        }
        if (keylen == 8 && strncasecmp(key, "password", 8) == 0)
            put(&o, end, "********", 8);
        else
            put(&o, end, val, (size_t)(p - val));
    }
    *o = '\0';
}
