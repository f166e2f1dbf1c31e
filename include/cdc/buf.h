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
#include <string.h>

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
/* Out of line: make the storage large enough for `extra` more bytes. */
void cdc_buf_grow(cdc_buf *b, size_t extra);

/*
 * The appenders are inline: encoders call them for every field of every
 * event, and as out-of-line calls (with a memcpy for each varint) they took
 * nearly 30% of the instructions cdc-capture spent encoding a row.
 */

/* Ensure room for `extra` more bytes (and a NUL after them). */
static inline void cdc_buf_reserve(cdc_buf *b, size_t extra)
{
    if (b->cap - b->len <= extra)
        cdc_buf_grow(b, extra);
}

static inline void cdc_buf_append(cdc_buf *b, const void *data, size_t len)
{
    if (len == 0)
        return;
    cdc_buf_reserve(b, len);
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

static inline void cdc_buf_putc(cdc_buf *b, uint8_t c)
{
    cdc_buf_reserve(b, 1);
    b->data[b->len++] = c;
}

static inline void cdc_buf_puts(cdc_buf *b, const char *s)
{
    cdc_buf_append(b, s, strlen(s));
}

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
