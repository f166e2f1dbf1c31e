/*
 * Logging for the daemons: one line per event on stderr,
 * "2026-11-24T08:14:00.123Z LEVEL program: message". Thread-safe (one
 * fprintf per line). Secrets never reach it: conninfo strings are passed
 * through cdc_redact_conninfo first.
 */
#ifndef CDC_LOG_H
#define CDC_LOG_H

#include <stddef.h>

typedef enum cdc_log_level {
    CDC_LOG_ERROR = 0,
    CDC_LOG_WARN,
    CDC_LOG_INFO,
    CDC_LOG_DEBUG,
} cdc_log_level;

/* Set the program name shown in each line (not copied: pass a literal). */
void cdc_log_init(const char *program);
void cdc_log_set_level(cdc_log_level level);
cdc_log_level cdc_log_get_level(void);
/* Parse "error", "warn", "info", "debug"; returns 0 or -1. */
int cdc_log_parse_level(const char *s, cdc_log_level *out);

void cdc_log(cdc_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define cdc_error(...) cdc_log(CDC_LOG_ERROR, __VA_ARGS__)
#define cdc_warn(...) cdc_log(CDC_LOG_WARN, __VA_ARGS__)
#define cdc_info(...) cdc_log(CDC_LOG_INFO, __VA_ARGS__)
#define cdc_debug(...) cdc_log(CDC_LOG_DEBUG, __VA_ARGS__)

/*
 * Copy a libpq conninfo (key=value form or postgresql:// URI) into out with
 * every password replaced by "********". Always NUL-terminates out.
 */
void cdc_redact_conninfo(const char *conninfo, char *out, size_t out_size);

#endif
