/*
 * Table-driven configuration (see cdc/config.h). The key table is the only
 * place a key is described: parsing, validation, defaults and --help all
 * read it, so the documentation cannot drift from the code.
 */
#include "cdc/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "cdc/buf.h"

#ifndef CDC_VERSION
#define CDC_VERSION "dev"
#endif

#define KAFKA_PREFIX "kafka."

static const cdc_cfg_key *find_key(const cdc_cfg_spec *spec, const char *name)
{
    for (const cdc_cfg_key *k = spec->keys; k->name; k++)
        if (strcmp(k->name, name) == 0)
            return k;
    return NULL;
}

const char *cdc_kv_get(const cdc_kv_list *l, const char *key)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i].key, key) == 0)
            return l->items[i].value;
    return NULL;
}

void cdc_kv_set(cdc_kv_list *l, const char *key, const char *value)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->items[i].key, key) == 0) {
            free(l->items[i].value);
            l->items[i].value = cdc_xstrdup(value);
            return;
        }
    }
    l->items = cdc_xrealloc(l->items, (l->n + 1) * sizeof *l->items);
    l->items[l->n].key = cdc_xstrdup(key);
    l->items[l->n].value = cdc_xstrdup(value);
    l->n++;
}

void cdc_kv_free(cdc_kv_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].key);
        free(l->items[i].value);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static int parse_bool(const char *v, bool *out)
{
    static const char *const t[] = {"true", "yes", "on", "1"};
    static const char *const f[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(v, t[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(v, f[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

static bool enum_has(const char *choices, const char *v)
{
    size_t vl = strlen(v);
    const char *p = choices;
    while (*p) {
        size_t n = strcspn(p, "|");
        if (n == vl && strncmp(p, v, n) == 0)
            return true;
        p += n;
        if (*p == '|')
            p++;
    }
    return false;
}

static int set_key(const cdc_cfg_key *k, void *cfg, const char *value, char *errstr,
                   size_t errstr_size)
{
    char *field = (char *)cfg + k->offset;
    switch (k->type) {
    case CDC_CFG_STR:
    case CDC_CFG_ENUM:
        if (k->type == CDC_CFG_ENUM && !enum_has(k->choices, value)) {
            snprintf(errstr, errstr_size, "%s: invalid value '%s' (expected one of %s)", k->name,
                     value, k->choices);
            return -1;
        }
        free(*(char **)field);
        *(char **)field = cdc_xstrdup(value);
        return 0;
    case CDC_CFG_INT: {
        errno = 0;
        char *end;
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end != '\0') {
            snprintf(errstr, errstr_size, "%s: invalid value '%s' (expected an integer)", k->name,
                     value);
            return -1;
        }
        if (v < k->min || v > k->max) {
            snprintf(errstr, errstr_size, "%s: value %ld out of range [%ld, %ld]", k->name, v,
                     k->min, k->max);
            return -1;
        }
        *(int *)field = (int)v;
        return 0;
    }
    case CDC_CFG_BOOL:
        if (parse_bool(value, (bool *)field) != 0) {
            snprintf(errstr, errstr_size, "%s: invalid value '%s' (expected true or false)",
                     k->name, value);
            return -1;
        }
        return 0;
    }
    return -1;
}

int cdc_config_set(const cdc_cfg_spec *spec, void *cfg, const char *key, const char *value,
                   char *errstr, size_t errstr_size)
{
    /*
     * A key is letters, digits, '.', '_' and '-'. Anything else is likely a
     * key whose '=' is missing, split at an '=' inside its value (a URI's
     * "?sslmode="): show only the first word, the rest may be a password.
     */
    size_t good = strspn(key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-");
    if (key[good] != '\0' || good == 0) {
        size_t word = strcspn(key, " \t:");
        snprintf(errstr, errstr_size,
                 "'%.*s%s': not a configuration key (letters, digits, '.', '_', '-'); is its "
                 "'=' missing?",
                 (int)word, key, key[word] ? "..." : "");
        return -1;
    }
    if (spec->kafka_keys && strncmp(key, KAFKA_PREFIX, strlen(KAFKA_PREFIX)) == 0 &&
        key[strlen(KAFKA_PREFIX)] != '\0') {
        cdc_kv_list *l = (cdc_kv_list *)((char *)cfg + spec->kafka_offset);
        cdc_kv_set(l, key + strlen(KAFKA_PREFIX), value);
        return 0;
    }
    const cdc_cfg_key *k = find_key(spec, key);
    if (!k) {
        snprintf(errstr, errstr_size, "%s: unknown configuration key", key);
        return -1;
    }
    return set_key(k, cfg, value, errstr, errstr_size);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static int load_file(const cdc_cfg_spec *spec, void *cfg, const char *path, char *errstr,
                     size_t errstr_size)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(errstr, errstr_size, "%s: cannot open configuration file: %s", path,
                 strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = 0;
    /* Keys set so far and their lines: a key set twice is a mistake. */
    struct seen_key {
        char *key;
        int line;
    } *seen = NULL;
    size_t nseen = 0;
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(errstr, errstr_size, "%s:%d: expected 'key = value'", path, lineno);
            rc = -1;
            break;
        }
        *eq = '\0';
        char *key = trim(s), *value = trim(eq + 1);
        size_t i = 0;
        while (i < nseen && strcmp(seen[i].key, key) != 0)
            i++;
        if (i < nseen) {
            snprintf(errstr, errstr_size, "%s: set twice (%s:%d and line %d)", key, path,
                     seen[i].line, lineno);
            rc = -1;
            break;
        }
        seen = cdc_xrealloc(seen, (nseen + 1) * sizeof *seen);
        seen[nseen++] = (struct seen_key){cdc_xstrdup(key), lineno};
        char err[512];
        if (cdc_config_set(spec, cfg, key, value, err, sizeof err) != 0) {
            snprintf(errstr, errstr_size, "%s (%s:%d)", err, path, lineno);
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        snprintf(errstr, errstr_size, "%s: cannot read configuration file: %s", path,
                 strerror(errno));
        rc = -1;
    }
    for (size_t i = 0; i < nseen; i++)
        free(seen[i].key);
    free(seen);
    free(line);
    fclose(f);
    return rc;
}

static bool is_set(const cdc_cfg_key *k, const void *cfg)
{
    const char *field = (const char *)cfg + k->offset;
    if (k->type == CDC_CFG_STR || k->type == CDC_CFG_ENUM) {
        const char *s = *(char *const *)field;
        return s && *s;
    }
    return true;
}

/* librdkafka is the authority on its own properties: let it judge each. */
static int check_kafka(const cdc_kv_list *l, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int rc = 0;
    for (size_t i = 0; i < l->n; i++) {
        char err[512];
        if (rd_kafka_conf_set(conf, l->items[i].key, l->items[i].value, err, sizeof err) !=
            RD_KAFKA_CONF_OK) {
            snprintf(errstr, errstr_size, KAFKA_PREFIX "%s: %s", l->items[i].key, err);
            rc = -1;
            break;
        }
    }
    rd_kafka_conf_destroy(conf);
    return rc;
}

void cdc_config_print_help(const cdc_cfg_spec *spec, FILE *out)
{
    fprintf(out, "Usage: %s [-c FILE] [-s KEY=VALUE]...", spec->program);
    for (const cdc_cfg_flag *f = spec->flags; f && f->name; f++)
        fprintf(out, " [%s]", f->name);
    fprintf(out, "\n       %s --help | --version\n\n%s\n\n", spec->program, spec->summary);
    fprintf(out, "Options:\n"
                 "  -c FILE          read 'key = value' lines from FILE ('#' comments)\n"
                 "  -s KEY=VALUE     set one key (overrides FILE)\n");
    for (const cdc_cfg_flag *f = spec->flags; f && f->name; f++)
        fprintf(out, "  %-16s %s\n", f->name, f->desc);
    fprintf(out, "  --help           show this text\n"
                 "  --version        show the version\n\nConfiguration keys:\n");
    for (const cdc_cfg_key *k = spec->keys; k->name; k++) {
        fprintf(out, "  %s", k->name);
        if (k->required)
            fprintf(out, " (required)");
        else if (k->def)
            fprintf(out, " (default: %s)", *k->def ? k->def : "empty");
        if (k->type == CDC_CFG_ENUM)
            fprintf(out, " [%s]", k->choices);
        else if (k->type == CDC_CFG_INT)
            fprintf(out, " [%ld..%ld]", k->min, k->max);
        else if (k->type == CDC_CFG_BOOL)
            fprintf(out, " [true|false]");
        fprintf(out, "\n      %s\n", k->desc);
    }
    for (const char *const *r = spec->kafka_required; r && *r; r++)
        fprintf(out, "  %s (required)\n      Kafka brokers, host:port[,host:port...]\n", *r);
    if (spec->kafka_keys)
        fprintf(out, "  kafka.*\n      any librdkafka property, passed through without "
                     "the 'kafka.' prefix\n      (e.g. kafka.security.protocol=ssl)\n");
    fprintf(out, "\nExit status: %s\n",
            spec->exit_status ? spec->exit_status
                              : "0 success, 1 runtime failure, 2 configuration error.");
}

cdc_cfg_result cdc_config_parse(const cdc_cfg_spec *spec, void *cfg, int argc, char **argv,
                                char *errstr, size_t errstr_size)
{
    const char *file = NULL;
    /* Defaults first. */
    for (const cdc_cfg_key *k = spec->keys; k->name; k++) {
        if (k->def && set_key(k, cfg, k->def, errstr, errstr_size) != 0)
            return CDC_CFG_ERROR;
    }
    /* First pass: flags and the file name; -s values are applied after the file. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            cdc_config_print_help(spec, stdout);
            return CDC_CFG_EXIT_OK;
        }
        if (strcmp(a, "--version") == 0) {
            printf("%s %s\n", spec->program, CDC_VERSION);
            return CDC_CFG_EXIT_OK;
        }
        if (strcmp(a, "-c") == 0 || strcmp(a, "-s") == 0) {
            if (i + 1 >= argc) {
                snprintf(errstr, errstr_size, "%s: missing argument", a);
                return CDC_CFG_ERROR;
            }
            if (a[1] == 'c' && file) {
                snprintf(errstr, errstr_size,
                         "-c: given twice (one configuration file; "
                         "use -s to override its keys)");
                return CDC_CFG_ERROR;
            }
            if (a[1] == 'c')
                file = argv[i + 1];
            i++;
            continue;
        }
        bool known = false;
        for (const cdc_cfg_flag *f = spec->flags; f && f->name; f++) {
            if (strcmp(a, f->name) == 0) {
                *(bool *)((char *)cfg + f->offset) = true;
                known = true;
            }
        }
        if (!known) {
            snprintf(errstr, errstr_size, "%s: unknown option (see --help)", a);
            return CDC_CFG_ERROR;
        }
    }
    if (file && load_file(spec, cfg, file, errstr, errstr_size) != 0)
        return CDC_CFG_ERROR;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0) {
            i++;
            continue;
        }
        if (strcmp(argv[i], "-s") != 0)
            continue;
        const char *kv = argv[++i];
        const char *eq = strchr(kv, '=');
        if (!eq || eq == kv) {
            /* Only its first word: the rest may be a secret missing its '='. */
            snprintf(errstr, errstr_size, "-s '%.*s%s': expected KEY=VALUE",
                     (int)strcspn(kv, " \t:"), kv, kv[strcspn(kv, " \t:")] ? "..." : "");
            return CDC_CFG_ERROR;
        }
        /*
         * "key = value" (blanks around the '=') is trimmed as in a file:
         * "group.id = x" is group "x". "key=value" is taken as it is: a
         * password may end in a blank.
         */
        char *key = cdc_xstrndup(kv, (size_t)(eq - kv)), *value = cdc_xstrdup(eq + 1);
        bool spaced = eq > kv && isspace((unsigned char)eq[-1]);
        int rc =
            cdc_config_set(spec, cfg, trim(key), spaced ? trim(value) : value, errstr, errstr_size);
        free(key);
        free(value);
        if (rc != 0)
            return CDC_CFG_ERROR;
    }
    for (const cdc_cfg_key *k = spec->keys; k->name; k++) {
        if (k->required && !is_set(k, cfg)) {
            snprintf(errstr, errstr_size, "%s: required key is missing", k->name);
            return CDC_CFG_ERROR;
        }
    }
    for (const char *const *r = spec->kafka_required; r && *r; r++) {
        const cdc_kv_list *l = (const cdc_kv_list *)((char *)cfg + spec->kafka_offset);
        const char *v = cdc_kv_get(l, *r + strlen(KAFKA_PREFIX));
        if (!v || !*v) {
            snprintf(errstr, errstr_size, "%s: required key is missing", *r);
            return CDC_CFG_ERROR;
        }
    }
    if (spec->kafka_keys &&
        check_kafka((cdc_kv_list *)((char *)cfg + spec->kafka_offset), errstr, errstr_size) != 0)
        return CDC_CFG_ERROR;
    return CDC_CFG_OK;
}

void cdc_config_free(const cdc_cfg_spec *spec, void *cfg)
{
    for (const cdc_cfg_key *k = spec->keys; k->name; k++) {
        if (k->type == CDC_CFG_STR || k->type == CDC_CFG_ENUM) {
            char **field = (char **)((char *)cfg + k->offset);
            free(*field);
            *field = NULL;
        }
    }
    if (spec->kafka_keys)
        cdc_kv_free((cdc_kv_list *)((char *)cfg + spec->kafka_offset));
}

int cdc_config_check_conninfo(const char *key, const char *conninfo, char *errstr,
                              size_t errstr_size)
{
    char *perr = NULL;
    PQconninfoOption *ci = PQconninfoParse(conninfo, &perr);
    if (ci) {
        PQconninfoFree(ci);
        return 0;
    }
    /*
     * libpq's message quotes the text it stopped at, which may be (or hold)
     * a password: keep only quoted option names and single characters.
     */
    cdc_buf msg;
    cdc_buf_init(&msg);
    const char *m = perr ? perr : "invalid";
    bool names_option = perr && strncmp(perr, "invalid connection option", 25) == 0;
    while (*m && *m != '\n') {
        if (*m != '"') {
            cdc_buf_putc(&msg, (uint8_t)*m++);
            continue;
        }
        const char *close = strchr(m + 1, '"');
        bool short_one =
            close && close - m == 2 && (close[1] == ' ' || close[1] == '\n' || close[1] == '\0');
        if (close && (names_option || short_one)) {
            cdc_buf_append(&msg, m, (size_t)(close - m) + 1); /* an option name, or "=" */
            m = close + 1;
            continue;
        }
        /* Quoted user text: it may hold a '"' of its own, so nothing after
         * its opening quote is shown. */
        cdc_buf_puts(&msg, "\"...\"");
        break;
    }
    snprintf(errstr, errstr_size, "%s: not a valid libpq connection string (%s)", key,
             cdc_buf_cstr(&msg));
    cdc_buf_free(&msg);
    PQfreemem(perr);
    return -1;
}

char *cdc_pg_options(const char *conninfo, const char *ours)
{
    cdc_buf b;
    cdc_buf_init(&b);
    PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp(o->keyword, "options") == 0 && o->val && *o->val)
            cdc_buf_printf(&b, "%s ", o->val);
    PQconninfoFree(opts);
    cdc_buf_puts(&b, ours);
    char *r = cdc_xstrdup(cdc_buf_cstr(&b));
    cdc_buf_free(&b);
    return r;
}

const char *cdc_pg_connect_timeout(const char *conninfo)
{
    const char *env = getenv("PGCONNECT_TIMEOUT"), *service = getenv("PGSERVICE");
    if ((env && *env) || (service && *service))
        return "";
    bool has_service = false;
    PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp(o->keyword, "service") == 0 && o->val && *o->val)
            has_service = true;
    PQconninfoFree(opts);
    return has_service ? "" : "10";
}
