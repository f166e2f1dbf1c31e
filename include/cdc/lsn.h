/* PostgreSQL log sequence numbers in the X/X text form Postgres uses. */
#ifndef CDC_LSN_H
#define CDC_LSN_H

#include <stdint.h>

typedef uint64_t cdc_lsn;
#define CDC_LSN_FMT "%X/%X"
#define CDC_LSN_ARGS(l) (unsigned)((uint64_t)(l) >> 32), (unsigned)(l)

/* Parse "16/B374D848"; returns 0 or -1. */
int cdc_lsn_parse(const char *s, cdc_lsn *out);

#endif
