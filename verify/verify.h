/*
 * cdc-verify: compares the replicated tables of a source and a target
 * database. Each side computes, inside the database, a row count and a sum
 * of row hashes per key-hash range; only ranges that differ are read again,
 * as a key-ordered stream merged from both sides, to name the differing
 * keys. Memory stays constant whatever the table size.
 */
#ifndef CDC_VERIFY_H
#define CDC_VERIFY_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

#include "cdc/config.h"

typedef struct verify_config {
    char *source_conninfo;
    char *target_conninfo;
    char *tables;           /* comma list of schema.table; "" = publication or all */
    char *publication_name; /* used when tables is empty and it exists */
    int ranges;             /* key-hash ranges per table; 0 = from the table size */
    int max_keys;           /* differing keys listed per table */
    int wait_ms;            /* re-compare a differing table for this long */
    char *log_level;
} verify_config;

extern const cdc_cfg_spec verify_config_spec;

/* Exit statuses. */
enum { VERIFY_EQUAL = 0, VERIFY_DIFFERENT = 1, VERIFY_ERROR = 2 };

/* Parse argv per verify_config_spec and validate; cfg zero-initialised. */
cdc_cfg_result verify_config_load(verify_config *cfg, int argc, char **argv, char *errstr,
                                  size_t errstr_size);
void verify_config_free(verify_config *cfg);

/*
 * Compare and print the report to `out` (errors go to the log, stderr).
 * Returns VERIFY_EQUAL, VERIFY_DIFFERENT or VERIFY_ERROR. `stop` (may be
 * NULL) is polled while waiting between comparisons and while a query
 * runs: once set, running queries are cancelled on the server.
 */
int verify_run(const verify_config *cfg, FILE *out, volatile sig_atomic_t *stop);

#endif
