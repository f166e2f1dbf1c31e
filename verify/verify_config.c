/* cdc-verify's configuration keys: the one table --help and README use. */
#include <stddef.h>
#include <stdio.h>

#include "cdc/log.h"
#include "verify.h"

#define K(field) offsetof(verify_config, field)

static const cdc_cfg_key verify_keys[] = {
    {"source.conninfo", CDC_CFG_STR, K(source_conninfo), true, NULL, 0, 0, NULL,
     "libpq connection string of the source database"},
    {"target.conninfo", CDC_CFG_STR, K(target_conninfo), true, NULL, 0, 0, NULL,
     "libpq connection string of the target database"},
    {"tables", CDC_CFG_STR, K(tables), false, "", 0, 0, NULL,
     "comma list of schema.table to compare; empty = the tables of publication.name, "
     "or every table of the source if it has no such publication"},
    {"publication.name", CDC_CFG_STR, K(publication_name), false, "cdc", 0, 0, NULL,
     "publication whose tables are compared when tables is empty"},
    {"ranges", CDC_CFG_INT, K(ranges), false, "0", 0, 1000000, NULL,
     "key-hash ranges per table (a count and a hash each); 0 = one per ~5,000 rows, 16 to "
     "65,536"},
    {"max.keys", CDC_CFG_INT, K(max_keys), false, "20", 0, 1000000, NULL,
     "differing keys listed per table"},
    {"wait.ms", CDC_CFG_INT, K(wait_ms), false, "0", 0, 86400000, NULL,
     "compare a differing table again, once a second, until it is equal or this much time "
     "has passed (for a pipeline that is still catching up)"},
    {"log.level", CDC_CFG_ENUM, K(log_level), false, "info", 0, 0, "error|warn|info|debug",
     "least severe level that is logged"},
    {NULL, 0, 0, false, NULL, 0, 0, NULL, NULL},
};

const cdc_cfg_spec verify_config_spec = {
    .program = "cdc-verify",
    .summary = "Compares the replicated tables of a source and a target PostgreSQL database.",
    .exit_status = "0 equal, 1 different, 2 error (connection, query, configuration).",
    .keys = verify_keys,
    .flags = NULL,
    .kafka_offset = 0,
    .kafka_keys = false,
    .kafka_required = NULL,
};

cdc_cfg_result verify_config_load(verify_config *cfg, int argc, char **argv, char *errstr,
                                  size_t errstr_size)
{
    cdc_cfg_result r = cdc_config_parse(&verify_config_spec, cfg, argc, argv, errstr, errstr_size);
    if (r != CDC_CFG_OK)
        return r;
    if (cdc_config_check_conninfo("source.conninfo", cfg->source_conninfo, errstr,
                                  errstr_size) != 0 ||
        cdc_config_check_conninfo("target.conninfo", cfg->target_conninfo, errstr,
                                  errstr_size) != 0)
        return CDC_CFG_ERROR;
    cdc_log_level lvl;
    cdc_log_parse_level(cfg->log_level, &lvl);
    cdc_log_set_level(lvl);
    return CDC_CFG_OK;
}

void verify_config_free(verify_config *cfg)
{
    cdc_config_free(&verify_config_spec, cfg);
}
