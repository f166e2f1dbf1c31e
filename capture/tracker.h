/*
 * Which source transactions Kafka holds completely.
 *
 * The flush position reported to Postgres may only pass a transaction once
 * every event of it has been acknowledged by Kafka; acknowledgements arrive
 * out of order across partitions. The tracker keeps one entry per
 * transaction in stream order with its count of unacknowledged events, and
 * releases the longest prefix of transactions that are both committed
 * (their Commit message was read) and fully acknowledged.
 *
 * Entries are identified by a sequence number that is passed to librdkafka
 * as the message opaque, so a late acknowledgement for an entry that was
 * dropped (stream restarted) is recognised and ignored.
 */
#ifndef CDC_TRACKER_H
#define CDC_TRACKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tracker_entry {
    uint64_t seq;
    uint64_t end_lsn; /* set at commit */
    int64_t pending;  /* events produced and not yet acknowledged */
    bool committed;
} tracker_entry;

typedef struct tracker {
    tracker_entry *ring;
    size_t cap, head, count;
    uint64_t next_seq;
    uint64_t failed; /* deliveries that failed since the last reset */
} tracker;

void tracker_init(tracker *t);
void tracker_free(tracker *t);

/* Open a transaction; returns its sequence number (never 0). */
uint64_t tracker_begin(tracker *t);
/* One more event of transaction `seq` handed to Kafka. */
void tracker_add(tracker *t, uint64_t seq);
/* Kafka's verdict for one event of `seq`. A failure is counted in t->failed
 * and the entry stays pending forever: the caller must restart the stream. */
void tracker_ack(tracker *t, uint64_t seq, bool ok);
/* The transaction's Commit was read; end_lsn is the commit record's end. */
void tracker_commit(tracker *t, uint64_t seq, uint64_t end_lsn);
/* Drop the trailing transaction if it is not committed (stream broke inside it). */
void tracker_abort_open(tracker *t);
/* Drop every entry (used when the producer is recreated). */
void tracker_reset(tracker *t);
/*
 * Release the completed prefix. Returns the end LSN of the last released
 * transaction, or 0 if none was released.
 */
uint64_t tracker_release(tracker *t);
/* True when no transaction is open or awaiting acknowledgement. */
static inline bool tracker_idle(const tracker *t)
{
    return t->count == 0;
}
/* Events handed to Kafka and not yet acknowledged, over all entries. */
int64_t tracker_in_flight(const tracker *t);

#endif
