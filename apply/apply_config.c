/* cdc-apply's configuration keys: the one table --help and README use. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "apply.h"
#include "cdc/buf.h"
#include "cdc/kafka.h"
#include "cdc/log.h"

#define K(field) offsetof(apply_config, field)

static const cdc_cfg_key apply_keys[] = {
    {"target.conninfo", CDC_CFG_STR, K(target_conninfo), true, NULL, 0, 0, NULL,
     "libpq connection string of the target database"},
    {"topic.prefix", CDC_CFG_STR, K(topic_prefix), false, "cdc", 0, 0, NULL,
     "topic prefix of the capture to follow: every {prefix}.{schema}.{table} topic"},
    {"group.id", CDC_CFG_STR, K(group_id), false, "cdc-apply", 0, 0, NULL,
     "Kafka consumer group; processes of one group share the partitions"},
    {"batch.max.events", CDC_CFG_INT, K(batch_max_events), false, "50000", 1, 1000000, NULL,
     "most events applied in one target transaction"},
    {"batch.max.bytes", CDC_CFG_INT, K(batch_max_bytes), false, "67108864", 1024, 1073741824, NULL,
     "most bytes of Kafka messages (keys and values) in one batch; with batch.max.events, "
     "this bounds memory when rows are large"},
    {"batch.max.ms", CDC_CFG_INT, K(batch_max_ms), false, "500", 1, 600000, NULL,
     "longest time a batch collects events while the previous one is being written; "
     "when the writers are free, what has arrived is applied at once"},
    {"target.connections", CDC_CFG_INT, K(target_connections), false, "2", 1, 64, NULL,
     "connections writing batches in parallel; each topic-partition is written by one of "
     "them, so their transactions touch different keys"},
    {"errors.tolerance", CDC_CFG_ENUM, K(errors_tolerance), false, "none", 0, 0, "none|all",
     "none: stop at a row the target rejects; all: send it to the DLQ topic and go on"},
    {"dlq.topic", CDC_CFG_STR, K(dlq_topic), false, "", 0, 0, NULL,
     "dead-letter topic for rejected events; empty = {topic.prefix}.dlq"},
    {"auto.create", CDC_CFG_BOOL, K(auto_create), false, "true", 0, 0, NULL,
     "create missing schemas, enum types and tables from the event schema"},
    {"auto.evolve", CDC_CFG_BOOL, K(auto_evolve), false, "true", 0, 0, NULL,
     "add columns that appear in a newer event schema"},
    {"read.before.assignment", CDC_CFG_BOOL, K(read_before_assignment), false, "true", 0, 0,
     NULL,
     "while the consumer group forms at start (Kafka waits group.initial.rebalance.delay.ms, "
     "3 s by default), read and apply every partition of the existing topics, unless the group "
     "has members already; the positions in the target keep this exactly once"},
    {"state.schema", CDC_CFG_STR, K(state_schema), false, "cdc", 0, 0, NULL,
     "schema in the target where cdc-apply records applied positions"},
    {"stats.interval.ms", CDC_CFG_INT, K(stats_interval_ms), false, "10000", 100, 3600000, NULL,
     "how often the progress line (events applied, share of time in the target) is logged"},
    {"log.level", CDC_CFG_ENUM, K(log_level), false, "info", 0, 0, "error|warn|info|debug",
     "least severe level that is logged"},
    {NULL, 0, 0, false, NULL, 0, 0, NULL, NULL},
};

static const char *const apply_kafka_required[] = {"kafka.bootstrap.servers", NULL};

const cdc_cfg_spec apply_config_spec = {
    .program = "cdc-apply",
    .summary = "Applies cdc change events from Kafka to a target PostgreSQL database, "
               "exactly once in effect.",
    .keys = apply_keys,
    .flags = NULL,
    .kafka_offset = offsetof(apply_config, kafka),
    .kafka_keys = true,
    .kafka_required = apply_kafka_required,
};

cdc_cfg_result apply_config_load(apply_config *cfg, int argc, char **argv, char *errstr,
                                 size_t errstr_size)
{
    cdc_cfg_result r = cdc_config_parse(&apply_config_spec, cfg, argc, argv, errstr, errstr_size);
    if (r != CDC_CFG_OK)
        return r;
    if (cdc_config_check_conninfo("target.conninfo", cfg->target_conninfo, errstr, errstr_size) != 0)
        return CDC_CFG_ERROR;
    if (cdc_topic_name_check("topic.prefix", cfg->topic_prefix, 200, errstr, errstr_size) != 0)
        return CDC_CFG_ERROR;
    if (cdc_kv_get(&cfg->kafka, "group.id")) {
        /* The consumer group and the positions recorded in the target must agree. */
        snprintf(errstr, errstr_size,
                 "kafka.group.id: set group.id instead (cdc-apply records its positions in the "
                 "target under group.id)");
        return CDC_CFG_ERROR;
    }
    if (!*cfg->group_id) {
        snprintf(errstr, errstr_size, "group.id: must not be empty");
        return CDC_CFG_ERROR;
    }
    if (!*cfg->state_schema || strlen(cfg->state_schema) > 63) {
        snprintf(errstr, errstr_size, "state.schema: must be 1 to 63 characters");
        return CDC_CFG_ERROR;
    }
    if (!*cfg->dlq_topic) {
        free(cfg->dlq_topic);
        cdc_buf b;
        cdc_buf_init(&b);
        cdc_buf_printf(&b, "%s.dlq", cfg->topic_prefix);
        cfg->dlq_topic = (char *)b.data;
    } else if (cdc_topic_name_check("dlq.topic", cfg->dlq_topic, 249, errstr, errstr_size) != 0) {
        return CDC_CFG_ERROR;
    }
    cdc_log_level lvl;
    cdc_log_parse_level(cfg->log_level, &lvl);
    cdc_log_set_level(lvl);
    return CDC_CFG_OK;
}

void apply_config_free(apply_config *cfg)
{
    cdc_config_free(&apply_config_spec, cfg);
}
