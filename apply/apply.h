/*
 * The cdc-apply daemon: consumes change events from Kafka and applies them
 * to a target PostgreSQL database in batches, exactly once in effect.
 */
#ifndef CDC_APPLY_H
#define CDC_APPLY_H

#include <signal.h>
#include <stdbool.h>

#include "cdc/config.h"

typedef struct apply_config {
    char *target_conninfo;
    char *topic_prefix;
    char *group_id;
    int batch_max_events;
    int batch_max_bytes;
    int batch_max_ms;
    int target_connections;
    int stats_interval_ms;
    char *errors_tolerance; /* none | all */
    char *dlq_topic;        /* empty = {prefix}.dlq */
    bool auto_create;
    bool auto_evolve;
    bool read_before_assignment;
    char *state_schema;
    char *log_level;
    cdc_kv_list kafka;
} apply_config;

extern const cdc_cfg_spec apply_config_spec;

cdc_cfg_result apply_config_load(apply_config *cfg, int argc, char **argv, char *errstr,
                                 size_t errstr_size);
void apply_config_free(apply_config *cfg);

/* Run until *stop (exit status 0) or an unrecoverable error (status 1). */
int apply_run(const apply_config *cfg, volatile sig_atomic_t *stop);

#endif
