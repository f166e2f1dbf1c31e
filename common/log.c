/* Line-oriented logging to stderr (see cdc/log.h). */
#include "cdc/log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include <libpq-fe.h>

#include "cdc/buf.h"

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

/*
 * libpq parses the string, exactly as it will when connecting, and the
 * result is written back as key=value pairs with every option libpq itself
 * hides (dispchar "*": password, sslpassword) masked. A string libpq cannot
 * parse is not shown at all.
 */
void cdc_redact_conninfo(const char *s, char *out, size_t out_size)
{
    if (out_size == 0)
        return;
    out[0] = '\0';
    PQconninfoOption *opts = s ? PQconninfoParse(s, NULL) : NULL;
    if (!opts) {
        snprintf(out, out_size, "(not shown: not a valid connection string)");
        return;
    }
    cdc_buf b;
    cdc_buf_init(&b);
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val)
            continue;
        if (b.len)
            cdc_buf_putc(&b, ' ');
        cdc_buf_printf(&b, "%s=", o->keyword);
        if (o->dispchar && o->dispchar[0] == '*') {
            cdc_buf_puts(&b, "********");
            continue;
        }
        bool quote = !*o->val || strpbrk(o->val, " \t\n\\'") != NULL;
        if (quote)
            cdc_buf_putc(&b, '\'');
        for (const char *c = o->val; *c; c++) {
            if (quote && (*c == '\'' || *c == '\\'))
                cdc_buf_putc(&b, '\\');
            cdc_buf_putc(&b, (uint8_t)*c);
        }
        if (quote)
            cdc_buf_putc(&b, '\'');
    }
    PQconninfoFree(opts);
    snprintf(out, out_size, "%s", cdc_buf_cstr(&b));
    cdc_buf_free(&b);
}
