/* The flush position may only pass fully acknowledged, committed transactions. */
#include <criterion/criterion.h>

#include "tracker.h"

Test(tracker, releases_only_committed_and_acknowledged_prefix)
{
    tracker t;
    tracker_init(&t);
    uint64_t a = tracker_begin(&t);
    tracker_add(&t, a);
    tracker_add(&t, a);
    tracker_commit(&t, a, 100);
    uint64_t b = tracker_begin(&t);
    tracker_add(&t, b);
    tracker_commit(&t, b, 200);
    cr_assert_eq(tracker_release(&t), 0, "nothing acknowledged yet");
    tracker_ack(&t, b, true); /* later transaction first: must not release */
    cr_assert_eq(tracker_release(&t), 0);
    tracker_ack(&t, a, true);
    cr_assert_eq(tracker_release(&t), 0, "a still has one pending");
    tracker_ack(&t, a, true);
    cr_assert_eq(tracker_release(&t), 200, "both complete");
    cr_assert(tracker_idle(&t));
    tracker_free(&t);
}

Test(tracker, open_transaction_blocks_release)
{
    tracker t;
    tracker_init(&t);
    uint64_t a = tracker_begin(&t);
    tracker_add(&t, a);
    tracker_ack(&t, a, true);
    cr_assert_eq(tracker_release(&t), 0, "acknowledged but not committed");
    tracker_commit(&t, a, 50);
    cr_assert_eq(tracker_release(&t), 50);
    tracker_free(&t);
}

Test(tracker, failed_delivery_never_releases)
{
    tracker t;
    tracker_init(&t);
    uint64_t a = tracker_begin(&t);
    tracker_add(&t, a);
    tracker_commit(&t, a, 10);
    tracker_ack(&t, a, false);
    cr_assert_eq(t.failed, 1);
    cr_assert_eq(tracker_release(&t), 0);
    tracker_free(&t);
}

Test(tracker, aborted_open_transaction_ignores_late_acks)
{
    tracker t;
    tracker_init(&t);
    uint64_t a = tracker_begin(&t);
    tracker_add(&t, a);
    tracker_commit(&t, a, 10);
    uint64_t b = tracker_begin(&t);
    tracker_add(&t, b);
    tracker_abort_open(&t); /* stream broke inside b */
    uint64_t c = tracker_begin(&t);
    cr_assert_neq(b, c);
    tracker_add(&t, c);
    tracker_commit(&t, c, 30);
    tracker_ack(&t, b, true); /* late ack of the dropped b */
    tracker_ack(&t, a, true);
    cr_assert_eq(tracker_release(&t), 10, "c must still wait for its own ack");
    tracker_ack(&t, c, true);
    cr_assert_eq(tracker_release(&t), 30);
    tracker_free(&t);
}

Test(tracker, empty_transactions_fold_and_stay_small)
{
    tracker t;
    tracker_init(&t);
    uint64_t a = tracker_begin(&t);
    tracker_add(&t, a);
    tracker_commit(&t, a, 1);
    for (uint64_t i = 0; i < 100000; i++) {
        uint64_t s = tracker_begin(&t);
        tracker_commit(&t, s, 2 + i);
    }
    cr_assert_leq(t.count, 2, "empty transactions behind a pending one must fold: %zu", t.count);
    cr_assert_eq(tracker_release(&t), 0);
    tracker_ack(&t, a, true);
    cr_assert_eq(tracker_release(&t), 100001);
    tracker_free(&t);
}

Test(tracker, many_in_flight_with_wraparound)
{
    tracker t;
    tracker_init(&t);
    uint64_t seqs[1000];
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 1000; i++) {
            seqs[i] = tracker_begin(&t);
            tracker_add(&t, seqs[i]);
            tracker_commit(&t, seqs[i], (uint64_t)(round * 1000 + i + 1));
        }
        cr_assert_eq(tracker_in_flight(&t), 1000);
        for (int i = 999; i >= 1; i--)
            tracker_ack(&t, seqs[i], true);
        cr_assert_eq(tracker_release(&t), 0);
        tracker_ack(&t, seqs[0], true);
        cr_assert_eq(tracker_release(&t), (uint64_t)(round * 1000 + 1000));
    }
    tracker_free(&t);
}
