/*
 * Kafka helpers both daemons share: building a librdkafka configuration from
 * our defaults plus the user's kafka.* pass-through, routing librdkafka's
 * logs and errors into our log without flooding it, and topic naming.
 */
#ifndef CDC_KAFKA_H
#define CDC_KAFKA_H

#include <stdbool.h>
#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "cdc/buf.h"
#include "cdc/config.h"

/*
 * New configuration: each `defaults` pair is applied unless the user set
 * that key, then every user pair. Installs the log and error callbacks.
 * Returns a conf owned by the caller (rd_kafka_new takes it over), or NULL
 * with errstr naming the kafka.* key librdkafka rejected.
 */
rd_kafka_conf_t *cdc_kafka_conf_new(const cdc_kv_list *user, const cdc_kv *defaults,
                                    size_t ndefaults, char *errstr, size_t errstr_size);

/*
 * Broker availability as seen through librdkafka's error callback: errors
 * are logged once per distinct error until cdc_kafka_note_ok() reports that
 * a request succeeded again (then one "available again" line is logged).
 */
void cdc_kafka_note_ok(void);
bool cdc_kafka_degraded(void);

/*
 * Topic for a table: "{prefix}.{schema}.{table}" with every character Kafka
 * does not allow in topic names ([A-Za-z0-9._-]) replaced by '_'. Names
 * longer than Kafka's 249-character limit are cut and end in a hash of the
 * full name so distinct tables keep distinct topics. Appends to out.
 */
/*
 * 0 if `s`, the value of configuration key `key`, is a legal Kafka topic
 * name (or topic prefix) of at most `max` characters: letters, digits, '.',
 * '_', '-'; not "." or "..". Else -1 with errstr naming the key.
 */
int cdc_topic_name_check(const char *key, const char *s, size_t max, char *errstr,
                         size_t errstr_size);

void cdc_topic_for_table(cdc_buf *out, const char *prefix, const char *schema,
                         const char *table);
/* "{prefix}._schemas" */
void cdc_topic_schemas(cdc_buf *out, const char *prefix);

/*
 * Read `topic` (every partition) from the beginning up to the end offsets it
 * has when the call starts, with a short-lived consumer of its own (no
 * consumer group membership, nothing committed), calling `record` for each
 * message; record returns what it wants counted. `conf` is duplicated, not
 * consumed; it must set bootstrap.servers. The topic is found by listing all
 * topics, never by asking for it by name (brokers with auto-creation would
 * create it). A topic that does not exist yet reads as empty.
 * Returns the sum of record's results (>= 0) or -1 with errstr (retriable:
 * timeouts and broker errors).
 */
int cdc_kafka_read_topic(const rd_kafka_conf_t *conf, const char *topic, int timeout_ms,
                         int (*record)(const rd_kafka_message_t *m, void *opaque), void *opaque,
                         char *errstr, size_t errstr_size);

#endif
