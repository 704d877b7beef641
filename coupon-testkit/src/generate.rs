//! Macros that turn the scenarios into one test each, per adapter, so that one broken
//! promise does not hide the others and the test runner runs them in parallel.
//!
//! Each macro takes the name of a module to generate and an expression evaluated
//! anew in every test (it may `.await`; it runs inside the test's runtime) that gives
//! the adapter as an `Arc` of a type implementing the port. The generated module starts
//! with `use super::*`, so the expression may name what the calling module declares or
//! imports (not `super::` paths, nor items local to a function). The calling crate
//! needs tokio with its `macros` and `rt-multi-thread` features: the tests are
//! `#[tokio::test(flavor = "multi_thread")]`.
//!
//! The example shows the call only: doc tests are not built as tests, so the generated
//! tests are checked by the crates that call the macros (coupon-core's, coupon-redis's
//! and coupon-seaorm's conformance tests).
//!
//! ```no_run
//! use std::sync::Arc;
//! use coupon_core::memory::{MemoryCounter, MemoryStore};
//!
//! coupon_testkit::counter_scenarios!(memory_counter, Arc::new(MemoryCounter::new()));
//! coupon_testkit::store_scenarios!(memory_store, Arc::new(MemoryStore::new()));
//! # fn main() {}
//! ```

/// One test per scenario of [`counter`](crate::counter), in a module
/// named `$module`, each on the counter `$make` gives.
#[macro_export]
macro_rules! counter_scenarios {
    ($module:ident, $make:expr) => {
        $crate::scenario_tests!(
            $module,
            counter,
            $make,
            admits_only_once_built,
            exact_cap_under_contention,
            one_grant_per_user_under_contention,
            release_returns_exactly_one_slot,
            held_slots_list_every_admission,
            claimed_slots_are_never_released,
            concurrent_claims_take_each_slot_once,
            admissions_carry_the_epoch_they_were_made_in,
            one_rebuild_at_a_time,
            a_failed_seal_leaves_the_counter_closed,
            rebuild_frees_the_gaps_between_stored_ranks,
            per_user_limit_above_one,
        );
    };
}

/// One test per sharded-campaign scenario of [`counter`](crate::counter), in a module
/// named `$module`, each on the counter `$make` gives: for counters whose
/// `max_shards` is 4 or more.
#[macro_export]
macro_rules! sharded_counter_scenarios {
    ($module:ident, $make:expr) => {
        $crate::scenario_tests!(
            $module,
            counter,
            $make,
            sharded_rush_admits_exactly_the_cap,
            a_dry_shard_takes_stock_from_the_others,
            one_grant_per_user_across_shards,
            a_release_on_one_shard_serves_another,
            a_sharded_rebuild_keeps_holders_and_shares_the_rest,
        );
    };
}

/// One test per scenario of [`store`](crate::store), in a module
/// named `$module`, each on the store `$make` gives.
#[macro_export]
macro_rules! store_scenarios {
    ($module:ident, $make:expr) => {
        $crate::scenario_tests!(
            $module,
            store,
            $make,
            rejects_invalid_campaigns,
            unknown_campaign_is_a_typed_error,
            coupons_of_lists_a_holders_coupons_by_rank,
            failures_are_listed_per_campaign_in_the_order_first_seen,
            windows_change_and_invalid_ones_change_nothing,
            same_ticket_twice_gives_one_coupon,
            one_coupon_per_user,
            batch_over_cap_persists_exactly_cap,
            records_failures_once_per_ticket,
            replayed_failures_close_and_reopen,
            lists_campaigns_and_coupons_of_users,
            pending_tickets_are_kept_until_their_coupon_exists,
            concurrent_batches_never_pass_the_cap,
            a_seal_counts_every_admission_the_store_knows,
            a_seal_from_a_replaced_epoch_changes_nothing,
            tickets_of_a_superseded_epoch_are_refused_unless_counted,
            a_dead_lettered_ticket_is_not_recorded_as_pending,
            a_dead_letter_of_a_superseded_ticket_is_not_counted,
        );
    };
}

/// One test per scenario of [`durable`](crate::durable), in a module named `$module`,
/// for a store that keeps what it acknowledged across a restart. `$open` is evaluated
/// once per test and gives a function that opens the store on that test's own storage,
/// the same storage every time it is called (`Fn() -> impl Future<Output =
/// Arc<dyn CouponStore>>`).
#[macro_export]
macro_rules! durable_store_scenarios {
    ($module:ident, $open:expr) => {
        $crate::scenario_tests!(
            $module,
            durable,
            $open,
            acknowledged_writes_survive_a_reopen,
        );
    };
}

/// One test per scenario of [`queue`](crate::queue), in a module
/// named `$module`, each on the `(queue, source)` pair `$make` gives: for a hand-off
/// whose source itself delivers again what it handed out unacked (a table, not a
/// broker's consumer group) and that can tell its position ([`IssueQueue::mark`](coupon_core::IssueQueue::mark)).
#[macro_export]
macro_rules! queue_scenarios {
    ($module:ident, $make:expr) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn delivers_every_published_ticket() {
                let (queue, source) = $make;
                $crate::queue::delivers_every_published_ticket(queue, source).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn unacked_batches_are_redelivered() {
                let (queue, source) = $make;
                $crate::queue::unacked_batches_are_redelivered(queue, source, |source| async {
                    source
                })
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn drained_only_once_every_ticket_before_the_mark_is_acked() {
                let (queue, source) = $make;
                $crate::queue::drained_only_once_every_ticket_before_the_mark_is_acked(
                    queue, source,
                )
                .await;
            }
        }
    };
}

/// A module `$module` with one multi-threaded tokio test per scenario function of
/// `coupon_testkit::$kind`, each called with `$make`. What the other macros expand to; call it
/// directly for a subset of scenarios.
#[macro_export]
macro_rules! scenario_tests {
    ($module:ident, $kind:ident, $make:expr, $($scenario:ident),+ $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    $crate::$kind::$scenario($make).await;
                }
            )+
        }
    };
}
