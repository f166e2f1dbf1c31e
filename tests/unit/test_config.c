/* Configuration parsing: defaults, file, overrides, errors naming the key. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apply.h"
#include "capture.h"
#include "cdc/kafka.h"
#include "cdc/log.h"
#include "verify.h"

static cdc_cfg_result load(capture_config *cfg, char *err, size_t n, int argc, ...)
{
    char *argv[32];
    va_list ap;
    va_start(ap, argc);
    argv[0] = "cdc-capture";
    for (int i = 1; i <= argc; i++)
        argv[i] = va_arg(ap, char *);
    va_end(ap);
    argv[argc + 1] = NULL;
    memset(cfg, 0, sizeof *cfg);
    return capture_config_load(cfg, argc + 1, argv, err, n);
}

/* Write `text` to a new temporary file whose name goes to path (24 bytes). */
static void write_temp(char *path, const char *text)
{
    strcpy(path, "/tmp/cdc-config-XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
}

Test(config, defaults_apply_when_only_required_keys_given)
{
    capture_config cfg;
    char err[512];
    cr_assert_eq(load(&cfg, err, sizeof err, 4, "-s", "source.conninfo=dbname=x", "-s",
                      "kafka.bootstrap.servers=127.0.0.1:9092"),
                 CDC_CFG_OK, "%s", err);
    cr_assert_str_eq(cfg.topic_prefix, "cdc");
    cr_assert_str_eq(cfg.slot_name, "cdc");
    cr_assert_str_eq(cfg.publication_name, "cdc");
    cr_assert_str_eq(cfg.tables, "");
    cr_assert_eq(cfg.topic_partitions, 1);
    cr_assert_eq(cfg.topic_replication_factor, -1);
    cr_assert_eq(cfg.status_interval_ms, 10000);
    cr_assert_str_eq(cdc_kv_get(&cfg.kafka, "bootstrap.servers"), "127.0.0.1:9092");
    capture_config_free(&cfg);
}

Test(config, missing_required_key_is_named)
{
    capture_config cfg;
    char err[512];
    cr_assert_eq(load(&cfg, err, sizeof err, 2, "-s", "kafka.bootstrap.servers=x:1"),
                 CDC_CFG_ERROR);
    cr_assert(strstr(err, "source.conninfo") != NULL, "%s", err);
    capture_config_free(&cfg);
    cr_assert_eq(load(&cfg, err, sizeof err, 2, "-s", "source.conninfo=dbname=x"), CDC_CFG_ERROR);
    cr_assert(strstr(err, "kafka.bootstrap.servers") != NULL, "%s", err);
    capture_config_free(&cfg);
}

Test(config, unknown_key_is_named)
{
    capture_config cfg;
    char err[512];
    cr_assert_eq(load(&cfg, err, sizeof err, 6, "-s", "source.conninfo=dbname=x", "-s",
                      "kafka.bootstrap.servers=x:1", "-s", "slot.nmae=foo"),
                 CDC_CFG_ERROR);
    cr_assert(strstr(err, "slot.nmae") != NULL, "%s", err);
    capture_config_free(&cfg);
}

Test(config, unknown_kafka_property_is_rejected_by_librdkafka)
{
    capture_config cfg;
    char err[512];
    cr_assert_eq(load(&cfg, err, sizeof err, 6, "-s", "source.conninfo=dbname=x", "-s",
                      "kafka.bootstrap.servers=x:1", "-s", "kafka.no.such.property=1"),
                 CDC_CFG_ERROR);
    cr_assert(strstr(err, "kafka.no.such.property") != NULL, "%s", err);
    capture_config_free(&cfg);
}

Test(config, bad_values_are_named)
{
    capture_config cfg;
    char err[512];
    const char *bad[] = {"topic.partitions=zero",
                         "topic.partitions=0",
                         "slot.name=Bad-Name",
                         "topic.prefix=a/b",
                         "log.level=loud",
                         "tables=a.b,",
                         "source.conninfo=host='unterminated"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char key[64];
        snprintf(key, sizeof key, "%.*s", (int)(strchr(bad[i], '=') - bad[i]), bad[i]);
        cr_assert_eq(load(&cfg, err, sizeof err, 6, "-s", "source.conninfo=dbname=x", "-s",
                          "kafka.bootstrap.servers=x:1", "-s", bad[i]),
                     CDC_CFG_ERROR, "%s accepted", bad[i]);
        cr_assert(strncmp(err, key, strlen(key)) == 0, "error for %s: %s", bad[i], err);
        capture_config_free(&cfg);
    }
}

Test(config, file_is_read_and_command_line_overrides_it)
{
    char path[24];
    write_temp(path, "# a comment\n\nsource.conninfo = host=db dbname=pay password=s3cret\n"
                     "kafka.bootstrap.servers=k:9092\n  topic.prefix = fromfile \n"
                     "slot.name = fileslot\nkafka.linger.ms = 7\n");
    capture_config cfg;
    char err[512];
    cr_assert_eq(load(&cfg, err, sizeof err, 4, "-s", "slot.name=cli", "-c", path), CDC_CFG_OK,
                 "%s", err);
    cr_assert_str_eq(cfg.source_conninfo, "host=db dbname=pay password=s3cret");
    cr_assert_str_eq(cfg.topic_prefix, "fromfile");
    cr_assert_str_eq(cfg.slot_name, "cli");
    cr_assert_str_eq(cdc_kv_get(&cfg.kafka, "linger.ms"), "7");
    capture_config_free(&cfg);
    unlink(path);
}

Test(config, file_errors_name_line_and_key)
{
    char path[24];
    write_temp(path, "source.conninfo = dbname=x\nno equals sign here\n");
    capture_config cfg;
    char err[512];
    cr_assert_eq(load(&cfg, err, sizeof err, 2, "-c", path), CDC_CFG_ERROR);
    cr_assert(strstr(err, ":2:") != NULL, "%s", err);
    capture_config_free(&cfg);
    cr_assert_eq(load(&cfg, err, sizeof err, 2, "-c", "/nonexistent/cdc.conf"), CDC_CFG_ERROR);
    cr_assert(strstr(err, "/nonexistent/cdc.conf") != NULL, "%s", err);
    capture_config_free(&cfg);
    unlink(path);
}

Test(config, unknown_option_and_missing_argument)
{
    capture_config cfg;
    char err[512];
    cr_assert_eq(load(&cfg, err, sizeof err, 1, "--frobnicate"), CDC_CFG_ERROR);
    cr_assert(strstr(err, "--frobnicate") != NULL, "%s", err);
    capture_config_free(&cfg);
    cr_assert_eq(load(&cfg, err, sizeof err, 1, "-s"), CDC_CFG_ERROR);
    capture_config_free(&cfg);
    cr_assert_eq(load(&cfg, err, sizeof err, 2, "-s", "novalue"), CDC_CFG_ERROR);
    capture_config_free(&cfg);
}

Test(config, help_lists_every_key, .init = cr_redirect_stdout)
{
    capture_config cfg;
    char err[512];
    cr_assert_eq(load(&cfg, err, sizeof err, 1, "--help"), CDC_CFG_EXIT_OK);
    capture_config_free(&cfg);
    fflush(stdout);
    FILE *out = cr_get_redirected_stdout();
    char text[16384];
    size_t n = fread(text, 1, sizeof text - 1, out);
    text[n] = '\0';
    for (const cdc_cfg_key *k = capture_config_spec.keys; k->name; k++)
        cr_assert(strstr(text, k->name) != NULL, "--help lacks %s", k->name);
    cr_assert(strstr(text, "kafka.bootstrap.servers") != NULL);
}

Test(config, tables_are_quoted_identifiers)
{
    char err[256];
    char *s = capture_tables_sql("public.accounts, ledger", err, sizeof err);
    cr_assert_str_eq(s, "\"public\".\"accounts\", \"public\".\"ledger\"");
    free(s);
    s = capture_tables_sql("\"My Schema\".\"we\"\"ird.t\",Upper.Case", err, sizeof err);
    cr_assert_str_eq(s, "\"My Schema\".\"we\"\"ird.t\", \"Upper\".\"Case\"");
    free(s);
    cr_assert_null(capture_tables_sql("a.\"unterminated", err, sizeof err));
    cr_assert_null(capture_tables_sql("a.b c", err, sizeof err));
}

Test(redact, passwords_never_survive)
{
    char out[512];
    cdc_redact_conninfo("host=db password=s3cret user=u", out, sizeof out);
    cr_assert_str_eq(out, "user=u password=******** host=db");
    cdc_redact_conninfo("host=db password = 'se cr\\'et' user=u", out, sizeof out);
    cr_assert(strstr(out, "se cr") == NULL && strstr(out, "user=u") != NULL, "%s", out);
    cdc_redact_conninfo("postgresql://alice:s3cret@db:5432/pay?sslmode=require", out, sizeof out);
    cr_assert_str_eq(out, "user=alice password=******** dbname=pay host=db port=5432 "
                          "sslmode=require");
    cdc_redact_conninfo("postgres://db/pay?user=a&password=s3cret&sslmode=verify-full", out,
                        sizeof out);
    cr_assert(strstr(out, "s3cret") == NULL, "%s", out);
    cr_assert(strstr(out, "sslmode=verify-full") != NULL, "%s", out);
    /* libpq option names are case-sensitive: PASSWORD is not an option. */
    cdc_redact_conninfo("PASSWORD=abc", out, sizeof out);
    cr_assert(strstr(out, "abc") == NULL, "%s", out);
    /* The forms a hand-written redaction missed (found in review). */
    const char *const leaky[] = {
        "host=db sslpassword=keypw",               /* the client key's passphrase */
        "postgresql://db/pay?sslpassword=keypw",   /* the same in a URI */
        "postgresql://u:pa?keypw@h/db",            /* libpq ends user info at '/', not '?' */
        "postgresql://h/db?%70assword=keypw",      /* a percent-encoded key */
        "host=db password=abc\\ keypw",            /* an escaped space in an unquoted value */
        "postgresql+psycopg2://app:keypw@db/prod", /* not a libpq string at all */
    };
    for (size_t i = 0; i < sizeof leaky / sizeof *leaky; i++) {
        cdc_redact_conninfo(leaky[i], out, sizeof out);
        cr_assert(strstr(out, "keypw") == NULL, "%s -> %s", leaky[i], out);
    }
    /* Values with spaces or quotes come back quoted, as libpq reads them. */
    cdc_redact_conninfo("host=db options='-c search_path=app'", out, sizeof out);
    cr_assert_str_eq(out, "host=db options='-c search_path=app'");
}

/* libpq's parse errors quote the text they stopped at: never echo it. */
Test(config, conninfo_errors_do_not_echo_the_string)
{
    char err[512];
    const char *const bad[] = {
        "postgresql+psycopg2://app:S3cret@db/prod",
        "postgresql://u:S3cret@[::1/db",
        "postgresql://u:s3cr%zzS3cret@h/db",
        "host=h password=my S3cret",
        "host=h password='S3cret",
        "postgresql://app:Pa\"S3cret@[::1/db", /* a quote in the secret */
        "host=h password=a\"S3cret\" x",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_eq(cdc_config_check_conninfo("target.conninfo", bad[i], err, sizeof err), -1,
                     "%s", bad[i]);
        cr_assert(strncmp(err, "target.conninfo: ", 17) == 0, "%s", err);
        cr_assert(strstr(err, "S3cret") == NULL, "%s -> %s", bad[i], err);
    }
    /* An unknown option's name is kept: it is what to fix. */
    cr_assert_eq(cdc_config_check_conninfo("k", "hots=db", err, sizeof err), -1);
    cr_assert(strstr(err, "\"hots\"") != NULL, "%s", err);
}

/* The user's own libpq "options" survive ours (ours come last and win). */
Test(config, pg_options_keep_the_users)
{
    char *o =
        cdc_pg_options("host=db options='-c search_path=app -c role=pay'", "-c datestyle=ISO");
    cr_assert_str_eq(o, "-c search_path=app -c role=pay -c datestyle=ISO");
    free(o);
    o = cdc_pg_options("postgresql://db/pay", "-c datestyle=ISO");
    cr_assert_str_eq(o, "-c datestyle=ISO");
    free(o);
}

Test(config, set_twice_is_an_error)
{
    char path[24];
    write_temp(path, "source.conninfo = dbname=x\nslot.name = a\n\nslot.name = b\n");
    capture_config cfg;
    char err[512];
    cr_assert_eq(load(&cfg, err, sizeof err, 2, "-c", path), CDC_CFG_ERROR);
    cr_assert(strncmp(err, "slot.name: set twice", 20) == 0 && strstr(err, ":2 and line 4"), "%s",
              err);
    capture_config_free(&cfg);
    cr_assert_eq(load(&cfg, err, sizeof err, 4, "-c", path, "-c", path), CDC_CFG_ERROR);
    cr_assert(strncmp(err, "-c: given twice", 15) == 0, "%s", err);
    capture_config_free(&cfg);
    unlink(path);
}

/*
 * Turning off what keeps an event from landing behind later ones is refused:
 * idempotence, the gapless guarantee, and no delivery timeout.
 */
Test(config, idempotence_gapless_and_no_timeout_cannot_be_turned_off)
{
    const char *const keys[] = {"kafka.enable.idempotence=false",
                                "kafka.enable.idempotence=0",
                                "kafka.enable.gapless.guarantee=false",
                                "kafka.message.timeout.ms=5000",
                                "kafka.delivery.timeout.ms=300000",
                                "kafka.message.timeout.ms=0x",
                                "kafka.acks=1",
                                "kafka.request.required.acks=0"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        capture_config cfg;
        char err[512];
        cr_assert_eq(load(&cfg, err, sizeof err, 6, "-s", "source.conninfo=dbname=x", "-s",
                          "kafka.bootstrap.servers=k:1", "-s", keys[i]),
                     CDC_CFG_ERROR, "%s", keys[i]);
        cr_assert(strncmp(err, keys[i], strcspn(keys[i], "=")) == 0, "%s", err);
        capture_config_free(&cfg);
    }
    capture_config cfg;
    char err[512];
    cr_assert_eq(load(&cfg, err, sizeof err, 6, "-s", "source.conninfo=dbname=x", "-s",
                      "kafka.bootstrap.servers=k:1", "-s", "kafka.enable.idempotence=true"),
                 CDC_CFG_OK, "%s", err);
    capture_config_free(&cfg);
    cr_assert_eq(load(&cfg, err, sizeof err, 6, "-s", "source.conninfo=dbname=x", "-s",
                      "kafka.bootstrap.servers=k:1", "-s", "kafka.message.timeout.ms=0"),
                 CDC_CFG_OK, "%s", err);
    capture_config_free(&cfg);
}

/* A -s without '=' may be a key and its secret: only the first word is shown. */
Test(config, s_without_equals_does_not_echo_the_value)
{
    capture_config cfg;
    char err[512];
    cr_assert_eq(load(&cfg, err, sizeof err, 2, "-s", "kafka.sasl.password S3cret"), CDC_CFG_ERROR);
    cr_assert(strstr(err, "kafka.sasl.password") != NULL && strstr(err, "S3cret") == NULL, "%s",
              err);
    capture_config_free(&cfg);
}

/*
 * A key whose '=' is missing, before a value with an '=' of its own (a URI's
 * "?sslmode="), was split there and echoed whole as an unknown key:
 * password included. Only the first word may be shown.
 */
Test(config, a_key_missing_its_equals_does_not_echo_a_uri_password)
{
    capture_config cfg;
    char err[512];
    cr_assert_eq(load(&cfg, err, sizeof err, 4, "-s",
                      "source.conninfo postgresql://u:S3cretPW@h/db?sslmode=require", "-s",
                      "kafka.bootstrap.servers=x:1"),
                 CDC_CFG_ERROR);
    cr_assert(strstr(err, "source.conninfo") != NULL && strstr(err, "S3cretPW") == NULL, "%s", err);
    capture_config_free(&cfg);
    char path[24];
    write_temp(path, "source.conninfo: postgresql://app:S3cretPW@db/pay?sslmode=verify-full\n");
    cr_assert_eq(load(&cfg, err, sizeof err, 4, "-c", path, "-s", "kafka.bootstrap.servers=x:1"),
                 CDC_CFG_ERROR);
    cr_assert(strstr(err, "source.conninfo") != NULL && strstr(err, "S3cretPW") == NULL, "%s", err);
    capture_config_free(&cfg);
    unlink(path);
}

/* A directory (or a file that cannot be read) given to -c is an error, not an empty file. */
Test(config, an_unreadable_config_file_is_an_error)
{
    capture_config cfg;
    char err[512];
    cr_assert_eq(load(&cfg, err, sizeof err, 6, "-c", "/tmp", "-s", "source.conninfo=dbname=x",
                      "-s", "kafka.bootstrap.servers=x:1"),
                 CDC_CFG_ERROR);
    cr_assert(strstr(err, "/tmp: cannot read") != NULL, "%s", err);
    capture_config_free(&cfg);
}

/* --bootstrap with bootstrap.mode=never loaded nothing without a word. */
Test(config, bootstrap_flag_contradicts_mode_never)
{
    capture_config cfg;
    char err[512];
    cr_assert_eq(load(&cfg, err, sizeof err, 7, "-s", "source.conninfo=dbname=x", "-s",
                      "kafka.bootstrap.servers=x:1", "-s", "bootstrap.mode=never", "--bootstrap"),
                 CDC_CFG_ERROR);
    cr_assert(strncmp(err, "--bootstrap", 11) == 0, "%s", err);
    capture_config_free(&cfg);
}

/* The README's configuration reference is checked against the key table. */
Test(config, readme_documents_every_key)
{
    FILE *f = fopen(CDC_SOURCE_DIR "/README.md", "r");
    cr_assert_not_null(f, "README.md not found");
    static char text[1 << 20];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    const cdc_cfg_spec *specs[] = {&capture_config_spec, &apply_config_spec,
                                   &verify_config_spec};
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
        /* Each program's table runs from its heading to the next heading. */
        char heading[64];
        snprintf(heading, sizeof heading, "### %s\n", specs[i]->program);
        char *section = strstr(text, heading);
        cr_assert_not_null(section, "README.md lacks the section %s", heading);
        section += strlen(heading);
        char *end = strstr(section, "\n#");
        char saved = '\0';
        if (end) {
            saved = *end;
            *end = '\0';
        }
        for (const cdc_cfg_key *k = specs[i]->keys; k->name; k++) {
            char row[128];
            snprintf(row, sizeof row, "| `%s` |", k->name);
            cr_assert(strstr(section, row) != NULL, "README.md lacks a row for %s key %s",
                      specs[i]->program, k->name);
        }
        /* And no row names a key the program does not have. */
        for (const char *r = section; (r = strstr(r, "\n| `")); r++) {
            const char *name = r + 4, *close = strchr(name, '`');
            cr_assert_not_null(close);
            bool known = strncmp(name, "kafka.", 6) == 0;
            for (const cdc_cfg_key *k = specs[i]->keys; k->name && !known; k++)
                known = strlen(k->name) == (size_t)(close - name) &&
                        strncmp(k->name, name, (size_t)(close - name)) == 0;
            for (const cdc_cfg_flag *fl = specs[i]->flags; fl && fl->name && !known; fl++)
                known = strlen(fl->name) == (size_t)(close - name) &&
                        strncmp(fl->name, name, (size_t)(close - name)) == 0;
            cr_assert(known, "README.md documents %.*s, which %s does not have",
                      (int)(close - name), name, specs[i]->program);
        }
        if (end)
            *end = saved;
    }
}

static cdc_cfg_result load_apply(apply_config *cfg, char *err, size_t n, int argc, char **args)
{
    char *argv[32] = {"cdc-apply"};
    for (int i = 0; i < argc; i++)
        argv[i + 1] = args[i];
    memset(cfg, 0, sizeof *cfg);
    return apply_config_load(cfg, argc + 1, argv, err, n);
}

Test(config, apply_defaults_and_dlq_topic)
{
    apply_config cfg;
    char err[512];
    char *args[] = {"-s", "target.conninfo=dbname=t", "-s", "kafka.bootstrap.servers=k:1",
                    "-s", "topic.prefix=pay"};
    cr_assert_eq(load_apply(&cfg, err, sizeof err, 6, args), CDC_CFG_OK, "%s", err);
    cr_assert_str_eq(cfg.group_id, "cdc-apply");
    cr_assert_str_eq(cfg.errors_tolerance, "none");
    cr_assert_str_eq(cfg.dlq_topic, "pay.dlq", "the DLQ topic follows the prefix");
    cr_assert_str_eq(cfg.state_schema, "cdc");
    cr_assert(cfg.auto_create && cfg.auto_evolve);
    cr_assert_eq(cfg.batch_max_events, 50000);
    apply_config_free(&cfg);
}

/* cdc-apply with its required keys and `setting` fails, naming `key` first. */
static void apply_rejects(char *setting, const char *key)
{
    apply_config cfg;
    char err[512];
    char *args[] = {"-s",   "target.conninfo=dbname=t", "-s", "kafka.bootstrap.servers=k:1", "-s",
                    setting};
    cr_assert_eq(load_apply(&cfg, err, sizeof err, 6, args), CDC_CFG_ERROR, "%s", setting);
    cr_assert(strncmp(err, key, strlen(key)) == 0, "%s", err);
    apply_config_free(&cfg);
}

Test(config, apply_errors_name_the_key)
{
    apply_config cfg;
    char err[512];
    apply_rejects("errors.tolerance=maybe", "errors.tolerance");
    char *missing[] = {"-s", "kafka.bootstrap.servers=k:1"};
    cr_assert_eq(load_apply(&cfg, err, sizeof err, 2, missing), CDC_CFG_ERROR);
    cr_assert(strncmp(err, "target.conninfo", 15) == 0, "%s", err);
    apply_config_free(&cfg);
    apply_rejects("auto.create=perhaps", "auto.create");
    /* A trailing comment is not a comment: the prefix would match nothing. */
    apply_rejects("topic.prefix=cdc # prod", "topic.prefix");
    apply_rejects("dlq.topic=bad topic!", "dlq.topic");
    /* The consumer group must be the one the positions are recorded under. */
    apply_rejects("kafka.group.id=other", "kafka.group.id");
}

/*
 * -s "key = value" is trimmed like a file line: "group.id = payments" joins
 * group "payments"; "key=value" is taken as it is (a password may end in a
 * blank).
 */
Test(config, s_values_are_trimmed_like_file_values)
{
    apply_config cfg;
    char err[512];
    char *args[] = {"-s", "target.conninfo=dbname=t", "-s", "kafka.bootstrap.servers=k:1",
                    "-s", "group.id = payments"};
    cr_assert_eq(load_apply(&cfg, err, sizeof err, 6, args), CDC_CFG_OK, "%s", err);
    cr_assert_str_eq(cfg.group_id, "payments");
    apply_config_free(&cfg);
    char *args2[] = {"-s", "target.conninfo=dbname=t", "-s", "kafka.bootstrap.servers=k:1",
                     "-s", "kafka.sasl.password= pw "};
    cr_assert_eq(load_apply(&cfg, err, sizeof err, 6, args2), CDC_CFG_OK, "%s", err);
    cr_assert_str_eq(cdc_kv_get(&cfg.kafka, "sasl.password"), " pw ");
    apply_config_free(&cfg);
}

/* The default connect_timeout yields to PGCONNECT_TIMEOUT and to a service file. */
Test(config, connect_timeout_default_yields_to_the_environment_and_services)
{
    unsetenv("PGCONNECT_TIMEOUT");
    unsetenv("PGSERVICE");
    cr_assert_str_eq(cdc_pg_connect_timeout("dbname=x"), "10");
    cr_assert_str_eq(cdc_pg_connect_timeout("service=pay dbname=x"), "");
    cr_assert_str_eq(cdc_pg_connect_timeout("postgresql:///x?service=pay"), "");
    setenv("PGCONNECT_TIMEOUT", "3", 1);
    cr_assert_str_eq(cdc_pg_connect_timeout("dbname=x"), "");
    unsetenv("PGCONNECT_TIMEOUT");
    setenv("PGSERVICE", "pay", 1);
    cr_assert_str_eq(cdc_pg_connect_timeout("dbname=x"), "");
    unsetenv("PGSERVICE");
}

/*
 * librdkafka's configuration warnings say a kafka.* key does not do what it
 * seems (here: sasl.username without sasl.mechanism); they were logged at
 * debug only. A consumer property ignored by a producer stays at debug:
 * every kafka.* key goes to each client a daemon makes.
 */
Test(config, librdkafka_configuration_warnings_are_logged_as_warnings, .init = cr_redirect_stderr)
{
    cdc_log_set_level(CDC_LOG_INFO);
    cdc_kv_list user = {0};
    cdc_kv_set(&user, "bootstrap.servers", "127.0.0.1:1");
    cdc_kv_set(&user, "sasl.username", "u");
    cdc_kv_set(&user, "auto.offset.reset", "earliest");
    char err[512];
    rd_kafka_conf_t *conf = cdc_kafka_conf_new(&user, NULL, 0, err, sizeof err);
    cr_assert_not_null(conf, "%s", err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    cr_assert_not_null(rk, "%s", err);
    rd_kafka_destroy(rk);
    cdc_kv_free(&user);
    fflush(stderr);
    FILE *f = cr_get_redirected_stderr();
    char out[8192];
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = '\0';
    cr_assert(strstr(out, "WARN") && strstr(out, "sasl.username"), "stderr: %s", out);
    cr_assert(!strstr(out, "auto.offset.reset"), "stderr: %s", out);
}
