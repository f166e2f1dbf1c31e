/* LSN text form (see cdc/lsn.h). */
#include "cdc/lsn.h"

#include <stdio.h>

int cdc_lsn_parse(const char *s, cdc_lsn *out)
{
    unsigned hi, lo;
    int n = 0;
    if (!s || sscanf(s, "%X/%X%n", &hi, &lo, &n) != 2 || s[n] != '\0')
        return -1;
    *out = ((uint64_t)hi << 32) | lo;
    return 0;
}
