/*
 * The cdc-capture daemon: configuration and the replication loop that
 * connects the source (libpq replication protocol, pgoutput) to the emitter.
 */
#ifndef CDC_CAPTURE_H
#define CDC_CAPTURE_H

#include <signal.h>
#include <stdbool.h>

#include "cdc/config.h"

typedef struct capture_config {
    char *source_conninfo;
    char *topic_prefix;
    char *slot_name;
    char *publication_name;
    char *tables;
    int topic_partitions;
    int topic_replication_factor;
    int status_interval_ms;
    int shutdown_timeout_ms;
    int stats_interval_ms;
    char *log_level;
    char *bootstrap_mode; /* initial | never | only */
    int bootstrap_workers;
    bool force_bootstrap; /* --bootstrap */
    cdc_kv_list kafka;
} capture_config;

extern const cdc_cfg_spec capture_config_spec;

/*
 * Parse and validate the command line. Returns CDC_CFG_OK, CDC_CFG_EXIT_OK
 * (help/version printed) or CDC_CFG_ERROR with errstr naming the key.
 */
cdc_cfg_result capture_config_load(capture_config *cfg, int argc, char **argv, char *errstr,
                                   size_t errstr_size);
void capture_config_free(capture_config *cfg);

/*
 * Parse the `tables` key ("schema.table,..." with optional double quotes)
 * into a SQL list of quoted identifiers using PQescapeIdentifier-equivalent
 * quoting. Returns a malloc'd string, or NULL with errstr.
 */
char *capture_tables_sql(const char *tables, char *errstr, size_t errstr_size);

/*
 * Run until *stop becomes true (exit status 0) or an unrecoverable error
 * (status 1, logged). Postgres and Kafka outages are retried forever.
 */
int capture_run(const capture_config *cfg, volatile sig_atomic_t *stop);

#endif
