/*
 * Growable byte buffer shared by every module that builds wire data
 * (Avro bodies, replication status messages, SQL text).
 *
 * Allocation failure aborts the process with a message: a daemon that cannot
 * allocate a few kilobytes cannot make progress safely, and silently
 * continuing would risk publishing a truncated event.
 */
#ifndef CDC_BUF_H
#define CDC_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct cdc_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} cdc_buf;

/* Zero-initialised cdc_buf is valid and empty; init is provided for clarity. */
void cdc_buf_init(cdc_buf *b);
/* Release the storage; the buffer is empty and reusable afterwards. */
void cdc_buf_free(cdc_buf *b);
/* Forget the contents but keep the storage. */
static inline void cdc_buf_reset(cdc_buf *b) { b->len = 0; }
/* Ensure room for `extra` more bytes. */
void cdc_buf_reserve(cdc_buf *b, size_t extra);
void cdc_buf_append(cdc_buf *b, const void *data, size_t len);
void cdc_buf_putc(cdc_buf *b, uint8_t c);
void cdc_buf_puts(cdc_buf *b, const char *s);
/* Append formatted text (no terminating NUL counted in len). */
void cdc_buf_printf(cdc_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* NUL-terminate without counting the NUL; returns data as a C string. */
const char *cdc_buf_cstr(cdc_buf *b);

/* malloc/realloc/strdup that abort with a message on failure. */
void *cdc_xmalloc(size_t n);
void *cdc_xcalloc(size_t n, size_t size);
void *cdc_xrealloc(void *p, size_t n);
char *cdc_xstrdup(const char *s);
char *cdc_xstrndup(const char *s, size_t n);

#endif
