/*
 * Table-driven configuration shared by the daemons.
 *
 * Command line: PROGRAM [-c FILE] [-s KEY=VALUE]... [flags] | --help | --version
 * FILE holds "key = value" lines; '#' starts a comment line. -s overrides
 * the file whatever the order on the command line. One table of known keys
 * (cdc_cfg_key) drives parsing, validation, defaults and the --help text, the
 * way librdkafka's property table does. Every "kafka.*" key is passed to
 * librdkafka without the prefix and checked by librdkafka itself.
 */
#ifndef CDC_CONFIG_H
#define CDC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef enum cdc_cfg_type {
    CDC_CFG_STR,  /* char * (owned by the config struct) */
    CDC_CFG_INT,  /* int, within [min, max] */
    CDC_CFG_BOOL, /* bool: true/false/yes/no/on/off/1/0 */
    CDC_CFG_ENUM, /* char *, one of the '|'-separated `choices` */
} cdc_cfg_type;

typedef struct cdc_cfg_key {
    const char *name;
    cdc_cfg_type type;
    size_t offset;       /* offsetof(config struct, field) */
    bool required;
    const char *def;     /* default as text; NULL = no default (field NULL/0) */
    long min, max;       /* CDC_CFG_INT */
    const char *choices; /* CDC_CFG_ENUM, e.g. "none|all" */
    const char *desc;
} cdc_cfg_key;

/* A key = value pair (kafka.* pass-through, without the prefix). */
typedef struct cdc_kv {
    char *key;
    char *value;
} cdc_kv;

typedef struct cdc_kv_list {
    cdc_kv *items;
    size_t n;
} cdc_kv_list;

/* Extra command-line flags a program accepts (e.g. --bootstrap). */
typedef struct cdc_cfg_flag {
    const char *name; /* "--bootstrap" */
    size_t offset;    /* offsetof(config struct, bool field) */
    const char *desc;
} cdc_cfg_flag;

typedef struct cdc_cfg_spec {
    const char *program;       /* "cdc-capture" */
    const char *summary;       /* one line for --help */
    const char *exit_status;   /* --help's exit status line; NULL = the daemons' */
    const cdc_cfg_key *keys;   /* terminated by an entry with name == NULL */
    const cdc_cfg_flag *flags; /* may be NULL; terminated by name == NULL */
    size_t kafka_offset;       /* offsetof(config struct, cdc_kv_list) */
    bool kafka_keys;           /* accepts kafka.* pass-through */
    const char *const *kafka_required; /* kafka.* keys that must be set, NULL-terminated */
} cdc_cfg_spec;

typedef enum cdc_cfg_result {
    CDC_CFG_OK = 0,
    CDC_CFG_EXIT_OK = 1, /* --help or --version printed: exit 0 */
    CDC_CFG_ERROR = 2,   /* errstr names the key: exit 2 */
} cdc_cfg_result;

/*
 * Parse argv into the zero-initialised struct `cfg` per `spec`: defaults,
 * then FILE, then -s overrides, then validation (required keys, types,
 * kafka.* keys checked against librdkafka). Prints --help/--version to stdout.
 */
cdc_cfg_result cdc_config_parse(const cdc_cfg_spec *spec, void *cfg, int argc,
                                char **argv, char *errstr, size_t errstr_size);

/* Set one key (as from -s); used by parse and by tests. */
int cdc_config_set(const cdc_cfg_spec *spec, void *cfg, const char *key,
                   const char *value, char *errstr, size_t errstr_size);

/* Print the usage text with every key, its default and description. */
void cdc_config_print_help(const cdc_cfg_spec *spec, FILE *out);

/* Free every string owned by cfg (and the kafka list). */
void cdc_config_free(const cdc_cfg_spec *spec, void *cfg);

/* Check that `conninfo` parses as a libpq connection string; errstr names `key`. */
int cdc_config_check_conninfo(const char *key, const char *conninfo, char *errstr,
                              size_t errstr_size);

/*
 * libpq's connect_timeout to pass before the conninfo (whose own value then
 * wins): "10" (seconds), or "" (libpq ignores an empty value) when the
 * timeout may come from elsewhere: PGCONNECT_TIMEOUT, or a service file
 * (PGSERVICE, or service= in the conninfo), which fills only keys not
 * given. Without any, a server or pooler that accepts the connection and
 * never answers holds a daemon in PQconnectdb for ever, deaf to SIGTERM.
 */
const char *cdc_pg_connect_timeout(const char *conninfo);

/*
 * The libpq "options" for a connection made from `conninfo`: the user's own
 * (from conninfo) followed by `ours`, which win where they overlap. A new
 * string, to free.
 */
char *cdc_pg_options(const char *conninfo, const char *ours);

/* Look up a kafka.* pass-through value (without prefix); NULL if unset. */
const char *cdc_kv_get(const cdc_kv_list *l, const char *key);
void cdc_kv_set(cdc_kv_list *l, const char *key, const char *value);
void cdc_kv_free(cdc_kv_list *l);

#endif
