/* Growable byte buffer and aborting allocators (see cdc/buf.h). */
#include "cdc/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t n)
{
    fprintf(stderr, "cdc: out of memory allocating %zu bytes\n", n);
    abort();
}

void *cdc_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *cdc_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom(n * size);
    return p;
}

void *cdc_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *cdc_xstrdup(const char *s)
{
    return cdc_xstrndup(s, strlen(s));
}

char *cdc_xstrndup(const char *s, size_t n)
{
    char *d = cdc_xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

void cdc_buf_init(cdc_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void cdc_buf_free(cdc_buf *b)
{
    free(b->data);
    cdc_buf_init(b);
}

void cdc_buf_grow(cdc_buf *b, size_t extra)
{
    if (b->cap - b->len > extra)
        return;
    size_t need = b->len + extra + 1; /* +1 keeps room for cdc_buf_cstr */
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2)
            oom(need);
        cap *= 2;
    }
    b->data = cdc_xrealloc(b->data, cap);
    b->cap = cap;
}

void cdc_buf_printf(cdc_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    cdc_buf_reserve(b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

const char *cdc_buf_cstr(cdc_buf *b)
{
    cdc_buf_reserve(b, 1);
    b->data[b->len] = '\0';
    return (const char *)b->data;
}
