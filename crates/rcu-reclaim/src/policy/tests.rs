use super::*;

#[test]
fn reader_fences_follow_the_membarrier_share_with_hysteresis() {
    // 15 µs a membarrier (a KVM guest): 3,333 a second is 5 % of a CPU.
    let each = Some(15_000);
    assert!(!fence_reads(false, 66, 20_000, each)); // 3,300 a second
    assert!(fence_reads(false, 67, 20_000, each)); // 3,350 a second

    // Once on, it stays on down to a quarter of the mark.
    assert!(fence_reads(true, 17, 20_000, each));
    assert!(!fence_reads(true, 16, 20_000, each));
    // A cheap membarrier (1 µs) needs 50,000 a second.
    assert!(!fence_reads(false, 999, 20_000, Some(1_000)));
    assert!(fence_reads(false, 1_000, 20_000, Some(1_000)));
    // No time elapsed, or none timed yet: no division by zero, a guess.
    assert!(fence_reads(false, 1, 0, None));
    assert!(!fence_reads(false, 0, 20_000, None));
}

const MS: Duration = Duration::from_millis(1);

#[test]
fn kswapd_looks_less_often_while_every_look_panics() {
    assert_eq!(kswapd_idle_wait(0), 10 * MS);
    assert_eq!(kswapd_idle_wait(1), 20 * MS);
    assert_eq!(kswapd_idle_wait(6), 640 * MS);
    assert_eq!(kswapd_idle_wait(7), Duration::from_secs(1));
    assert_eq!(kswapd_idle_wait(u32::MAX), Duration::from_secs(1));
}

#[test]
fn overload_has_hysteresis_between_the_marks() {
    let p = Params::default();
    assert!(!shard_overloads(&p, 10_000) && shard_overloads(&p, 10_001));
    assert!(!shard_overload_ends(&p, 100) && shard_overload_ends(&p, 99));
    assert!(!domain_overloaded(&p, 20_000) && domain_overloaded(&p, 20_001));
}

#[test]
fn a_shard_is_due_for_any_reason_and_waits_only_for_the_lazy_delay() {
    let p = Params::default();
    let quiet = ShardFacts {
        age: Some(10 * MS),
        unrequested: 5,
        ..ShardFacts::default()
    };
    assert_eq!(shard_pace(&p, false, quiet), Pace::Wait(40 * MS));
    assert_eq!(shard_pace(&p, true, quiet), Pace::Due);
    for due in [
        ShardFacts {
            hurry: true,
            ..quiet
        },
        ShardFacts {
            overloaded: true,
            ..quiet
        },
        ShardFacts {
            pressured: true,
            ..quiet
        },
        ShardFacts {
            age: Some(50 * MS),
            ..quiet
        },
        ShardFacts {
            unrequested: 1000,
            ..quiet
        },
        ShardFacts {
            unrequested_bytes: DEFAULT_PACE_BYTES,
            ..quiet
        },
    ] {
        assert_eq!(shard_pace(&p, false, due), Pace::Due, "{due:?}");
    }
    // Pressure with nothing waiting does not ask.
    let empty = ShardFacts {
        pressured: true,
        ..ShardFacts::default()
    };
    assert_eq!(shard_pace(&p, false, empty), Pace::Idle);
}

#[test]
fn the_grace_period_thread_spaces_its_normal_grace_periods() {
    use super::{gp_thread_gap, GP_THREAD_MIN_INTERVAL as I};
    // The first, and any after a pause as long as the interval, at once.
    assert_eq!(gp_thread_gap(None), None);
    assert_eq!(gp_thread_gap(Some(I)), None);
    assert_eq!(gp_thread_gap(Some(I * 3)), None);
    // Back to back: the rest of the interval.
    assert_eq!(gp_thread_gap(Some(Duration::ZERO)), Some(I));
    assert_eq!(gp_thread_gap(Some(I / 4)), Some(I - I / 4));
}

#[test]
fn kicks_come_with_idle_shards_full_batches_and_overload() {
    let p = Params::default();
    let none = (0, 0);
    assert!(kick_after_enqueue(&p, true, false, 3, none));
    assert!(!kick_after_enqueue(&p, false, false, 3, none));
    assert!(kick_after_enqueue(&p, false, false, 1000, none));
    assert!(
        !kick_after_enqueue(&p, false, false, 1001, none),
        "once per batch"
    );
    assert!(kick_after_enqueue(&p, false, true, 1, none));
    let mark = p.pace_bytes;
    assert!(kick_after_enqueue(&p, false, false, 3, (mark, 10)));
    assert!(
        !kick_after_enqueue(&p, false, false, 3, (mark + 10, 10)),
        "once per crossing"
    );
    assert!(!kick_after_enqueue(&p, false, false, 3, (mark - 1, 10)));
    assert!(batch_full(&p, 1000, 0) && !batch_full(&p, 999, 0));
    assert!(batch_full(&p, 1, mark) && !batch_full(&p, 1, mark - 1));
}

#[test]
fn bytes_set_the_pace_and_a_trickle_still_waits() {
    let p = Params::default();
    // A shard over the byte threshold asks before the lazy delay...
    let heavy = ShardFacts {
        age: Some(MS),
        unrequested: 3,
        unrequested_bytes: p.pace_bytes,
        ..ShardFacts::default()
    };
    assert_eq!(shard_pace(&p, false, heavy), Pace::Due);
    // ...a trickle waits for it.
    let trickle = ShardFacts {
        unrequested_bytes: p.pace_bytes - 1,
        ..heavy
    };
    assert_eq!(shard_pace(&p, false, trickle), Pace::Wait(49 * MS));
    // A thread's page goes to its shard at the same mark.
    let pp = page_pace(p.pace_bytes, p.max_pending_bytes);
    assert!(page_due_by_pace(pp, p.pace_bytes, PAGE_MIN_OBJECTS));
    assert!(!page_due_by_pace(pp, p.pace_bytes - 1, PAGE_MIN_OBJECTS));
    // Fewer, larger objects: at four times the pace.
    let big = p.pace_bytes * PAGE_BYTES_FACTOR;
    assert!(!page_due_by_pace(pp, p.pace_bytes, PAGE_MIN_OBJECTS - 1));
    assert!(!page_due_by_pace(pp, big - 1, PAGE_MIN_OBJECTS - 1));
    assert!(page_due_by_pace(pp, big, 1));
    // Many small objects: at half a page, once they hold the early
    // page's 512 bytes; tiny ones wait for the page to fill.
    let early = p.pace_bytes / EARLY_PAGE_DIVISOR;
    assert!(page_due_by_pace(pp, early, PAGE_HANDOFF_OBJECTS));
    assert!(!page_due_by_pace(pp, early - 1, PAGE_HANDOFF_OBJECTS));
    assert!(!page_due_by_pace(pp, 10 * early, PAGE_HANDOFF_OBJECTS - 1));
    let off = Params {
        pace_bytes: usize::MAX,
        ..Params::default()
    };
    let off_pace = page_pace(off.pace_bytes, off.max_pending_bytes);
    assert!(!page_due_by_pace(
        off_pace,
        1 << 40,
        PAGE_HANDOFF_OBJECTS - 1
    ));
    assert_eq!(shard_pace(&off, false, heavy), Pace::Wait(49 * MS));
    // Under a cap on the garbage, a page goes at a quarter of the cap in
    // a few objects whatever the pace (the shards' pace is unchanged).
    let cap = 4 << 20;
    let capped = Params {
        max_pending_bytes: cap,
        ..off.clone()
    };
    let capped_pace = page_pace(capped.pace_bytes, capped.max_pending_bytes);
    assert!(page_due_by_pace(capped_pace, cap / 4, 1));
    assert!(!page_due_by_pace(capped_pace, cap / 4 - 1, 1));
    assert!(page_due_by_pace(capped_pace, cap / 16, PAGE_MIN_OBJECTS));
    assert_eq!(shard_pace(&capped, false, heavy), Pace::Wait(49 * MS));
    assert_eq!(
        page_pace(DEFAULT_PACE_BYTES, HEADROOM_FLOOR),
        DEFAULT_PACE_BYTES
    );
    // A memory limit's allowance cuts the page's pace as a cap does...
    assert_eq!(
        limit_page_pace(usize::MAX, cap, HEADROOM_FLOOR),
        capped_pace
    );
    assert_eq!(
        limit_page_pace(usize::MAX, usize::MAX, HEADROOM_FLOOR),
        off_pace
    );
    // ...never under a sixteenth of the least cap (a budget's allowance
    // may be a reclaim step of 256 KiB), which is over the default pace.
    for allow in [0, 1, 256 << 10, HEADROOM_FLOOR] {
        assert_eq!(
            limit_page_pace(usize::MAX, allow, HEADROOM_FLOOR),
            HEADROOM_FLOOR / 16
        );
        assert_eq!(
            limit_page_pace(DEFAULT_PACE_BYTES, allow, HEADROOM_FLOOR),
            DEFAULT_PACE_BYTES
        );
    }
    // ...nor under a sixteenth of a budget's floor (its reclaim step, at
    // least 256 KiB), which is the default pace.
    for allow in [0, 1, 256 << 10] {
        assert_eq!(limit_page_pace(usize::MAX, allow, 256 << 10), 16 << 10);
        assert_eq!(
            limit_page_pace(DEFAULT_PACE_BYTES, allow, 256 << 10),
            DEFAULT_PACE_BYTES
        );
    }
}

#[test]
fn a_page_goes_early_with_a_32nd_of_the_pace_after_a_quiet_spell() {
    let p = Params::default();
    let early = p.pace_bytes / EARLY_PAGE_DIVISOR;
    assert_eq!(early, 512);
    let quiet = || Some((EARLY_PAGE_QUIET, StartCost::Membarrier(None)));
    let young = || 0;
    assert!(page_due_early(&p, early, quiet, || unreachable!()));
    assert!(!page_due_early(&p, early - 1, quiet, young));
    // Not while a grace period is in progress, nor soon after one
    // began, while the page is young.
    assert!(!page_due_early(&p, p.pace_bytes, || None, young));
    assert!(!page_due_early(
        &p,
        p.pace_bytes,
        || Some((
            EARLY_PAGE_QUIET - Duration::from_micros(1),
            StartCost::Membarrier(None)
        )),
        young
    ));
    // The clock is read only when the bytes are enough.
    assert!(!page_due_early(&p, 0, || unreachable!(), || unreachable!()));
}

#[test]
fn a_page_goes_early_after_a_shorter_quiet_spell_where_a_start_costs_a_fence() {
    let p = Params::default();
    let early = p.pace_bytes / EARLY_PAGE_DIVISOR;
    let young = || 0;
    assert_eq!(
        early_page_quiet(&p, p.pace_bytes, StartCost::Membarrier(None)),
        EARLY_PAGE_QUIET
    );
    assert_eq!(
        early_page_quiet(&p, 0, StartCost::Fence),
        EARLY_PAGE_QUIET_FENCED
    );
    assert!(EARLY_PAGE_QUIET_FENCED >= RETIRER_GP_MIN_INTERVAL_FENCED);
    assert!(EARLY_PAGE_QUIET_FENCED < EARLY_PAGE_QUIET);
    // A spell long enough where starts fence is too short where they
    // issue `membarrier`.
    let spell = EARLY_PAGE_QUIET_FENCED;
    assert!(page_due_early(
        &p,
        early,
        || Some((spell, StartCost::Fence)),
        young
    ));
    assert!(!page_due_early(
        &p,
        early,
        || Some((spell, StartCost::Membarrier(None))),
        young
    ));
    let shorter = EARLY_PAGE_QUIET_FENCED - Duration::from_micros(1);
    assert!(!page_due_early(
        &p,
        early,
        || Some((shorter, StartCost::Fence)),
        young
    ));
    // The bytes are still needed.
    assert!(!page_due_early(
        &p,
        early - 1,
        || Some((spell, StartCost::Fence)),
        young
    ));
}

#[test]
fn a_page_goes_early_once_old_while_grace_periods_come_often() {
    let p = Params::default();
    let early = p.pace_bytes / EARLY_PAGE_DIVISOR;
    let old = || EARLY_PAGE_AGE_MS;
    let soon = || {
        Some((
            EARLY_PAGE_QUIET - Duration::from_micros(1),
            StartCost::Membarrier(None),
        ))
    };
    assert!(page_due_early(&p, early, soon, old));
    assert!(page_due_early(&p, early, || None, old));
    assert!(!page_due_early(
        &p,
        early,
        || None,
        || EARLY_PAGE_AGE_MS - 1
    ));
    // An old page still needs its bytes (a trickle waits for the
    // lazy flush).
    assert!(!page_due_early(&p, early - 1, || None, old));
    // Its age is read at every fourth advance point.
    let a = RETIRES_PER_ADVANCE;
    assert!(!age_look_due(a) && !age_look_due(2 * a) && !age_look_due(3 * a));
    assert!(age_look_due(4 * a) && age_look_due(8 * a));
}

#[test]
fn the_pace_weighs_a_membarriers_recent_cost_and_few_outliers() {
    // The first call sets it, and it is never 0 after.
    assert_eq!(membarrier_recent_ns(0, 1_000), 1_000);
    assert_eq!(membarrier_recent_ns(0, 0), 1);
    assert_eq!(membarrier_recent_ns(1_000, 1_000), 1_000);
    // One call preempted for a millisecond moves it by an eighth.
    assert_eq!(membarrier_recent_ns(1_000, 1_000_000), 1_125);
    // A lasting rise (a thread on every CPU: 1 µs to 10 µs) doubles it
    // within six calls and reaches it within thirty.
    let mut r = 1_000;
    let mut calls = 0;
    while r < 2_000 {
        r = membarrier_recent_ns(r, 10_000);
        calls += 1;
    }
    assert!(calls <= 6, "{calls}");
    for _ in 0..24 {
        r = membarrier_recent_ns(r, 10_000);
    }
    assert!(r > 9_000, "{r}");
    // A fall, at an eighth a call: within forty.
    for _ in 0..40 {
        r = membarrier_recent_ns(r, 1_000);
    }
    assert!(r < 1_100, "{r}");
    assert!(membarrier_recent_ns(u64::MAX, u64::MAX) > 0);
}

/// A first `membarrier` timed at a few nanoseconds (a clock coarser than
/// the call: `Instant` on a `jiffies` or `hpet`-less guest reads 0 for most
/// calls) must not pin the recent cost there: in integer eighths, an
/// average of 1-3 ns gained nothing from any sample (`ns.min(2 * recent) / 8`
/// is 0), so the retiring threads' spacing stayed at its least (10 µs) for
/// the domain's life, however dear its `membarrier`s became.
#[test]
fn a_tiny_first_membarrier_sample_does_not_pin_the_recent_cost() {
    for first in [0, 1, 2, 3, 7] {
        let mut r = membarrier_recent_ns(0, first);
        let mut calls = 0;
        while r < 10_000 && calls < 1_000 {
            r = membarrier_recent_ns(r, 20_000);
            calls += 1;
        }
        assert!(
            r >= 10_000,
            "after a first sample of {first} ns, 1,000 calls of 20 µs left it at {r} ns"
        );
        // Within about a hundred calls: a tenth of a second of grace periods.
        assert!(calls <= 120, "{first} ns first: {calls} calls");
    }
    // A steady cost still stays where it is.
    for ns in [1, 5, 100, 1_000, 20_000] {
        assert_eq!(membarrier_recent_ns(ns, ns), ns);
    }
}

#[test]
fn where_a_membarrier_is_cheap_retiring_threads_start_grace_periods_sooner() {
    let us = Duration::from_micros;
    let membarrier = |ns| StartCost::Membarrier(Some(ns));
    let p = Params::default();
    let half = p.pace_bytes / CHEAP_EARLY_PAGE_DIVISOR;
    assert_eq!(half, 8 << 10);
    // Untimed, or dear (5 µs and up): the full spacing.
    assert_eq!(
        early_page_quiet(&p, p.pace_bytes, StartCost::Membarrier(None)),
        EARLY_PAGE_QUIET
    );
    assert_eq!(
        early_page_quiet(&p, half, membarrier(5_000)),
        EARLY_PAGE_QUIET
    );
    assert_eq!(
        early_page_quiet(&p, half, membarrier(u64::MAX)),
        EARLY_PAGE_QUIET
    );
    assert_eq!(
        retirer_gp_min_interval(StartCost::Membarrier(None)),
        RETIRER_GP_MIN_INTERVAL
    );
    assert_eq!(
        retirer_gp_min_interval(membarrier(3_000)),
        RETIRER_GP_MIN_INTERVAL
    );
    // A microsecond each: 40 µs apart, a 40th of a CPU.
    assert_eq!(early_page_quiet(&p, half, membarrier(1_000)), us(40));
    assert_eq!(retirer_gp_min_interval(membarrier(1_000)), us(40));
    // Never closer than where a start costs a fence.
    assert_eq!(
        early_page_quiet(&p, half, membarrier(0)),
        EARLY_PAGE_QUIET_FENCED
    );
    assert_eq!(
        retirer_gp_min_interval(membarrier(100)),
        RETIRER_GP_MIN_INTERVAL_FENCED
    );
    assert_eq!(
        retirer_gp_min_interval(StartCost::Fence),
        RETIRER_GP_MIN_INTERVAL_FENCED
    );
    // Below the bounds' tops, at most a 40th of a CPU, under the share
    // that switches readers to fences.
    for ns in [0, 400, 1_000, 2_000, 2_500] {
        let apart = retirer_gp_min_interval(membarrier(ns))
            .min(early_page_quiet(&p, half, membarrier(ns)))
            .as_nanos() as u64;
        let per_10k = ns * 10_000 / apart;
        assert!(
            per_10k <= 10_000 / MEMBARRIER_SPACING_PER_COST,
            "{ns} ns: {per_10k}"
        );
        assert!(!fence_reads(
            false,
            1_000_000_000 / apart,
            1_000_000,
            Some(ns)
        ));
    }
    // A page holding half the pace goes early after the shorter spell; a
    // page holding less waits the full one, however cheap a `membarrier`.
    let short = || Some((us(40), membarrier(1_000)));
    assert!(page_due_early(&p, half, short, || 0));
    assert!(!page_due_early(
        &p,
        half,
        || Some((us(39), membarrier(1_000))),
        || 0
    ));
    assert!(!page_due_early(&p, half - 1, short, || 0));
    assert_eq!(
        early_page_quiet(&p, half - 1, membarrier(0)),
        EARLY_PAGE_QUIET
    );
    let full = || Some((EARLY_PAGE_QUIET, membarrier(1_000)));
    assert!(page_due_early(
        &p,
        p.pace_bytes / EARLY_PAGE_DIVISOR,
        full,
        || 0
    ));
}

#[test]
fn a_page_of_small_objects_looks_at_the_clock_every_fourth_advance_point() {
    let a = RETIRES_PER_ADVANCE;
    // 64-byte objects: at 32 and 64 retires, not at 8, 16 or 24.
    for n in [a, 2 * a, 3 * a] {
        assert!(!quiet_look_due(n, n * 64), "{n}");
    }
    assert!(quiet_look_due(4 * a, 4 * a * 64));
    assert!(quiet_look_due(8 * a, 8 * a * 64));
    // Objects of `SMALL_OBJECT_BYTES` or more on average: every point.
    for n in [a, 2 * a, 3 * a] {
        assert!(quiet_look_due(n, n * SMALL_OBJECT_BYTES), "{n}");
        assert!(quiet_look_due(n, n * 272), "{n}");
    }
}

#[test]
fn pages_flush_lazily_except_under_pressure() {
    let p = Params::default();
    assert_eq!(page_due_ms(&p, 1000, false), 1050);
    // Under pressure, a millisecond old: a page its thread is filling is
    // left to it for that long.
    assert_eq!(page_due_ms(&p, 1000, true), 1001);
    let forever = Params {
        lazy_delay: Duration::MAX,
        ..Params::default()
    };
    assert_eq!(page_due_ms(&forever, 1000, false), usize::MAX);
    assert_eq!(page_due_ms(&forever, 1000, true), 1001);
    assert_eq!(page_flush_age(&p, false), 50 * MS);
    assert_eq!(page_flush_age(&p, true), MS);
    // A lazy delay under the pressure age wins.
    let eager = Params {
        lazy_delay: Duration::ZERO,
        ..Params::default()
    };
    assert_eq!(page_flush_age(&eager, true), Duration::ZERO);
    assert_eq!(page_due_ms(&eager, 1000, true), 1000);
}

#[test]
fn expediting_needs_overload_or_a_backlog_worth_it_in_fast_mode() {
    let p = Params::default();
    assert!(expedite(&p, true, false, 0));
    assert!(!expedite(&p, false, true, (1 << 20) - 1));
    assert!(expedite(&p, false, true, 1 << 20));
    assert!(!expedite(&p, false, false, 1 << 30));
}

#[test]
fn batches_follow_blimit_and_the_divisor_unless_unlimited() {
    let p = Params::default();
    assert_eq!(batch_limit(&p, Some(10), false, 100), 10);
    assert_eq!(batch_limit(&p, Some(1), false, 100), 10, "at least blimit");
    assert_eq!(
        batch_limit(&p, Some(10), false, 12_800),
        100,
        "pending >> 7"
    );
    assert_eq!(batch_limit(&p, Some(10), true, 100), usize::MAX);
    assert_eq!(batch_limit(&p, None, false, 100), usize::MAX);
}

#[test]
fn a_workers_batch_takes_one_page_unless_unlimited() {
    assert_eq!(batch_pages(Some(10), false, usize::MAX), 1);
    assert_eq!(batch_pages(Some(10), false, 0), 0, "left to the producer");
    assert_eq!(batch_pages(Some(10), true, usize::MAX), usize::MAX);
    assert_eq!(batch_pages(None, false, usize::MAX), usize::MAX);
    assert_eq!(batch_pages(None, false, 4), 4);
}

#[test]
fn the_producer_window_runs_from_the_last_hand_off() {
    let now = Instant::now();
    let w = 5 * MS;
    assert_eq!(left_to_producer(None, now, w), None);
    assert_eq!(left_to_producer(Some(now), now, w), Some(w));
    assert_eq!(left_to_producer(Some(now), now + 2 * MS, w), Some(3 * MS));
    assert_eq!(left_to_producer(Some(now), now + w, w), None);
    assert_eq!(left_to_producer(Some(now), now, Duration::ZERO), None);
}

#[test]
fn a_drain_steps_faster_behind_a_backlog_and_is_taken_after_the_window() {
    assert_eq!(drain_step(0), DRAIN_STEP_KEEPING_UP);
    assert_eq!(drain_step(1), DRAIN_STEP);
    assert_eq!(drain_step(THROTTLE_PAGES - 1), DRAIN_STEP);
    assert_eq!(drain_step(THROTTLE_PAGES), DRAIN_STEP_HURRY);
    let p = Params::default();
    assert_eq!(drain_due_ms(&p, 1000), 1005);
    assert_eq!(drain_due_ms(&p, usize::MAX), usize::MAX);
}

#[test]
fn a_drain_through_the_last_grace_periods_pages_steps_one() {
    for backlog in 0..THROTTLE_PAGES {
        assert_eq!(drain_step_for(backlog, true), DRAIN_STEP_KEEPING_UP);
        assert_eq!(drain_step_for(backlog, false), drain_step(backlog));
    }
    assert_eq!(drain_step_for(THROTTLE_PAGES, true), DRAIN_STEP_HURRY);
    assert_eq!(drain_step_for(THROTTLE_PAGES, false), DRAIN_STEP_HURRY);
}

#[test]
fn garbage_under_a_limit_may_take_half_the_room_left_to_its_mark() {
    const MIB: usize = 1 << 20;
    // 85 MiB mark, 40 MiB in use of which 10 garbage: 30 MiB live,
    // 55 left, 27.5 allowed.
    assert_eq!(
        headroom_allowance(85 * MIB, 40 * MIB, 10 * MIB, HEADROOM_FLOOR),
        55 * MIB / 2
    );
    // Live data past the mark (or usage under the garbage): the floor.
    assert_eq!(
        headroom_allowance(85 * MIB, 90 * MIB, 0, HEADROOM_FLOOR),
        HEADROOM_FLOOR
    );
    assert_eq!(
        headroom_allowance(85 * MIB, 90 * MIB, 0, 256 << 10),
        256 << 10
    );
    assert_eq!(
        headroom_allowance(85 * MIB, 0, 10 * MIB, HEADROOM_FLOOR),
        85 * MIB / 2
    );
    assert!(!headroom_waits(8 * MIB, 8 * MIB) && headroom_waits(8 * MIB, 8 * MIB + 1));
    assert!(headroom_wait_done(8 * MIB, 4 * MIB) && !headroom_wait_done(8 * MIB, 4 * MIB + 1));
    // Usage read every few ms, every ms while over.
    assert!(!headroom_reads(false, HEADROOM_READ_EVERY_MS - 1));
    assert!(headroom_reads(false, HEADROOM_READ_EVERY_MS));
    assert!(!headroom_reads(true, 0) && headroom_reads(true, 1));
    assert_eq!(memory_state(80 * MIB, 60 * MIB), MemoryState::Plenty);
    assert_eq!(memory_state(80 * MIB, 60 * MIB + 1), MemoryState::Short);
    assert_eq!(memory_state(80 * MIB, 80 * MIB), MemoryState::Short);
    assert_eq!(memory_state(80 * MIB, 80 * MIB + 1), MemoryState::OverMark);
    // 2 MiB a millisecond: that much a millisecond ahead; shrinking,
    // or a read long ago, or none: the usage itself.
    assert_eq!(
        usage_ahead(60 * MIB, Some(56 * MIB), 2),
        60 * MIB + 2 * MIB * USAGE_LOOKAHEAD_MS
    );
    assert_eq!(usage_ahead(60 * MIB, Some(64 * MIB), 2), 60 * MIB);
    assert_eq!(usage_ahead(60 * MIB, Some(10 * MIB), 1000), 60 * MIB);
    assert_eq!(usage_ahead(60 * MIB, None, 1), 60 * MIB);
    assert_eq!(usage_ahead(usize::MAX - 1, Some(0), 1), usize::MAX);
    assert_eq!(call_backlog_mark(MemoryState::Plenty), None);
    assert_eq!(call_backlog_mark(MemoryState::Short), Some(CALL_BACKLOG));
    assert_eq!(
        call_backlog_mark(MemoryState::OverMark),
        Some(CALL_BACKLOG_OVER)
    );
}

#[test]
fn the_throttle_starts_over_its_mark_and_ends_at_half() {
    assert!(!throttles(THROTTLE_PAGES) && throttles(THROTTLE_PAGES + 1));
    assert!(throttle_done(THROTTLE_PAGES / 2) && !throttle_done(THROTTLE_PAGES / 2 + 1));
}

#[test]
fn writers_wait_for_a_grace_period_only_when_it_is_held_up_and_they_are_over_the_mark() {
    let p = Params::default();
    let (mark, after) = (p.held_up_bytes, p.held_up_after);
    let bytes = |b: usize| move || b;
    // None in progress (or given up on): never.
    assert!(!held_up_waits(&p, None, bytes(usize::MAX)));
    // Young: a usual grace period, whatever waits (not even summed).
    assert!(!held_up_waits(&p, Some(after / 2), || unreachable!()));
    // Old, but under the mark: the trickle goes on.
    assert!(!held_up_waits(&p, Some(after * 10), bytes(mark)));
    // Old and over the mark.
    assert!(held_up_waits(&p, Some(after), bytes(mark + 1)));
    // Turned off.
    let off = Params {
        held_up_bytes: usize::MAX,
        ..Params::default()
    };
    assert!(!held_up_waits(
        &off,
        Some(Duration::from_secs(60)),
        bytes(usize::MAX)
    ));
}

#[test]
fn writers_wait_only_under_pressure_and_over_the_throttle_until_half() {
    let p = Params::default();
    let mark = p.pressure_throttle_bytes;
    // No signal: never, whatever waits.
    assert!(!pressure_throttles(&p, 0, usize::MAX));
    // A signal: only over the mark.
    assert!(!pressure_throttles(&p, 1, mark));
    assert!(pressure_throttles(&p, 1, mark + 1));
    // Waits until half the mark, or the signal ends.
    assert!(!pressure_throttle_done(&p, 1, mark / 2 + 1));
    assert!(pressure_throttle_done(&p, 1, mark / 2));
    assert!(pressure_throttle_done(&p, 0, mark * 4));
    // Waits longer the further over the mark it starts.
    assert_eq!(
        pressure_throttle_max_wait(&p, mark + 1),
        PRESSURE_THROTTLE_MAX_WAIT
    );
    assert_eq!(
        pressure_throttle_max_wait(&p, mark * 2 + 1),
        PRESSURE_THROTTLE_MAX_WAIT
    );
    assert_eq!(
        pressure_throttle_max_wait(&p, mark * 2 + 2),
        PRESSURE_THROTTLE_MAX_WAIT_FAR_OVER
    );
    assert_eq!(
        pressure_throttle_max_wait(&p, mark * 4 + 3),
        PRESSURE_THROTTLE_MAX_WAIT_FAR_OVER
    );
    assert_eq!(
        pressure_throttle_max_wait(&p, mark * 4 + 4),
        PRESSURE_THROTTLE_MAX_WAIT_STALLED
    );
    // Off when the mark is usize::MAX.
    let off = Params {
        pressure_throttle_bytes: usize::MAX,
        ..Params::default()
    };
    assert!(!pressure_throttles(&off, 1, usize::MAX));
}

#[test]
fn fast_mode_outlasts_the_last_signal_by_two_grace_periods() {
    let until = fast_until(7);
    assert_eq!(until, 9);
    assert!(fast_mode(1, 100, 0));
    assert!(fast_mode(0, 8, until));
    assert!(!fast_mode(0, 9, until));
}

#[test]
fn run_callbacks_escalates_with_priority() {
    assert_eq!(expedite_threshold(0), 64 << 10);
    assert_eq!(expedite_threshold(6), 4 << 20);
    assert_eq!(expedite_threshold(200), (64 << 10) << 12);
    assert_eq!(run_work(false, 0, 1 << 30, None), RunWork::ReadyOnly);
    assert_eq!(run_work(true, 0, 0, None), RunWork::Barrier);
    assert_eq!(run_work(true, 6, 4 << 20, None), RunWork::Expedite);
    assert_eq!(run_work(true, 6, (4 << 20) - 1, None), RunWork::ReadyOnly);
    assert_eq!(run_work(true, 10, 1 << 30, None), RunWork::ReadyOnly);
    assert_eq!(run_work(true, 11, 100, Some(100)), RunWork::Expedite);
    assert_eq!(run_work(true, 11, 99, Some(100)), RunWork::ReadyOnly);
}

/// A wait over a memory limit's allowance gives a worker asleep on one
/// item longer the nearer the limit, and never as long as the wait itself.
#[test]
fn the_headroom_waits_patience_grows_towards_the_limit() {
    let plenty = headroom_stuck_ms(MemoryState::Plenty);
    let short = headroom_stuck_ms(MemoryState::Short);
    let over = headroom_stuck_ms(MemoryState::OverMark);
    assert_eq!(plenty, WORKER_STUCK_MS);
    assert!(plenty < short && short < over, "{plenty} {short} {over}");
    assert!((over as u128) < HEADROOM_MAX_WAIT.as_millis());
}

#[test]
fn retiring_threads_space_grace_periods_only_where_a_start_costs_a_membarrier() {
    use super::{retirer_gp_min_interval, RETIRER_GP_MIN_INTERVAL, RETIRER_GP_MIN_INTERVAL_FENCED};
    assert_eq!(
        retirer_gp_min_interval(StartCost::Membarrier(None)),
        RETIRER_GP_MIN_INTERVAL
    );
    assert_eq!(
        retirer_gp_min_interval(StartCost::Fence),
        RETIRER_GP_MIN_INTERVAL_FENCED
    );
    assert!(RETIRER_GP_MIN_INTERVAL_FENCED * 10 <= RETIRER_GP_MIN_INTERVAL);
}
