/* Transaction acknowledgement tracking (see tracker.h). */
#include "tracker.h"

#include <stdlib.h>

#include "cdc/buf.h"

void tracker_init(tracker *t)
{
    t->ring = NULL;
    t->cap = t->head = t->count = 0;
    t->next_seq = 1;
    t->failed = 0;
}

void tracker_free(tracker *t)
{
    free(t->ring);
    tracker_init(t);
}

static tracker_entry *at(const tracker *t, size_t i)
{
    return &t->ring[(t->head + i) % t->cap];
}

/* Entries are sorted by seq; binary search tolerates gaps left by aborts. */
static tracker_entry *find(tracker *t, uint64_t seq)
{
    size_t lo = 0, hi = t->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        tracker_entry *e = at(t, mid);
        if (e->seq == seq)
            return e;
        if (e->seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static void grow(tracker *t)
{
    size_t ncap = t->cap ? t->cap * 2 : 64;
    tracker_entry *n = cdc_xmalloc(ncap * sizeof *n);
    for (size_t i = 0; i < t->count; i++)
        n[i] = *at(t, i);
    free(t->ring);
    t->ring = n;
    t->cap = ncap;
    t->head = 0;
}

uint64_t tracker_begin(tracker *t)
{
    if (t->count == t->cap)
        grow(t);
    tracker_entry *e = &t->ring[(t->head + t->count) % t->cap];
    e->seq = t->next_seq++;
    e->end_lsn = 0;
    e->pending = 0;
    e->committed = false;
    t->count++;
    return e->seq;
}

void tracker_add(tracker *t, uint64_t seq)
{
    tracker_entry *e = find(t, seq);
    if (e)
        e->pending++;
}

void tracker_ack(tracker *t, uint64_t seq, bool ok)
{
    if (!ok) {
        t->failed++;
        return;
    }
    tracker_entry *e = find(t, seq);
    if (e)
        e->pending--;
}

void tracker_commit(tracker *t, uint64_t seq, uint64_t end_lsn)
{
    tracker_entry *e = find(t, seq);
    if (!e)
        return;
    e->end_lsn = end_lsn;
    e->committed = true;
    /*
     * A transaction with nothing pending behind one that still waits adds
     * nothing to wait for: fold it into its predecessor so a stream of empty
     * or fast transactions behind a slow one keeps the tracker small.
     */
    if (e->pending == 0 && t->count >= 2 && e == at(t, t->count - 1)) {
        tracker_entry *prev = at(t, t->count - 2);
        if (prev->committed) {
            prev->end_lsn = end_lsn;
            t->count--;
        }
    }
}

void tracker_abort_open(tracker *t)
{
    if (t->count > 0 && !at(t, t->count - 1)->committed)
        t->count--;
}

void tracker_reset(tracker *t)
{
    t->head = 0;
    t->count = 0;
    t->failed = 0;
}

uint64_t tracker_release(tracker *t)
{
    uint64_t lsn = 0;
    while (t->count > 0) {
        tracker_entry *e = at(t, 0);
        if (!e->committed || e->pending > 0)
            break;
        lsn = e->end_lsn;
        t->head = (t->head + 1) % t->cap;
        t->count--;
    }
    return lsn;
}

int64_t tracker_in_flight(const tracker *t)
{
    int64_t n = 0;
    for (size_t i = 0; i < t->count; i++)
        n += at(t, i)->pending;
    return n;
}
