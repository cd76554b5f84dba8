//! The crdps' unit tests.

use super::*;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc;

static RAN: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn count(_: *mut RcuHead) {
    RAN.fetch_add(1, Ordering::Relaxed);
}

fn heads(n: usize) -> &'static mut [RcuHead] {
    (0..n)
        .map(|_| RcuHead {
            next: ptr::null_mut(),
            func: Some(count),
        })
        .collect::<Vec<_>>()
        .leak()
}

/// Pushes `order` (indices into `hs`) as `push_chain` links a stack:
/// each head's `next` is the head pushed before it. Returns the top.
fn stack_of(hs: &mut [RcuHead], order: &[usize]) -> *mut RcuHead {
    let mut top: *mut RcuHead = ptr::null_mut();
    for &i in order {
        hs[i].next = top;
        top = &mut hs[i];
    }
    top
}

/// The heads of a chain from `first`, in order, as indices into `hs`.
fn walk(hs: &[RcuHead], first: *mut RcuHead) -> Vec<usize> {
    let mut out = Vec::new();
    let mut cur = first;
    while !cur.is_null() {
        assert!(out.len() <= hs.len(), "still a cycle: {out:?}");
        out.push(hs.iter().position(|h| ptr::eq(h, cur)).unwrap());
        // SAFETY: a head of `hs`.
        cur = unsafe { (*cur).next };
    }
    out
}

/// Ten heads, of which are pushed 0, then 1, then `gap` others, then 1
/// again, then one more; and the stack's top.
fn pushed_twice(gap: usize) -> (&'static mut [RcuHead], *mut RcuHead) {
    let hs = heads(10);
    let mut order = vec![0, 1];
    order.extend(2..2 + gap);
    order.extend([1, 2 + gap]);
    let top = stack_of(hs, &order);
    (hs, top)
}

/// A head pushed again before it was taken makes a cycle; `chain_of`
/// cuts it, so every head still reachable is in the chain once (the
/// heads pushed before the head's first push are lost).
#[test]
fn chain_of_cuts_the_cycle_a_head_pushed_twice_makes() {
    for gap in [0, 1, 5] {
        let (hs, top) = pushed_twice(gap);
        // SAFETY: the heads are this test's.
        let chain = unsafe { chain_of(top, 0) };
        let got = walk(hs, chain.newest);
        let mut want = vec![2 + gap, 1];
        want.extend((2..2 + gap).rev());
        assert_eq!(got, want, "gap {gap}");
        assert_eq!(chain.len, want.len() as u64, "gap {gap}");
        assert!(
            ptr::eq(chain.oldest, &hs[*want.last().unwrap()]),
            "gap {gap}"
        );
    }
}

/// A chain with no cycle is untouched by the check.
#[test]
fn chain_of_leaves_a_chain_without_a_cycle_as_it_is() {
    for n in [1, 2, 3, 7, 64, 100] {
        let hs = heads(n);
        let order: Vec<_> = (0..n).collect();
        let top = stack_of(hs, &order);
        // SAFETY: the heads are this test's.
        let chain = unsafe { chain_of(top, 0) };
        assert_eq!(chain.len, n as u64);
        assert_eq!(walk(hs, chain.newest), (0..n).rev().collect::<Vec<_>>());
    }
}

/// Reversed in place, a chain running into a cycle comes back to its
/// newest head (the batch's test for one), and `cut_cycle` then leaves
/// each reachable head once.
#[test]
fn a_reversed_chain_with_a_cycle_ends_at_its_newest_and_is_cut() {
    for gap in [0, 1, 5] {
        let (hs, top) = pushed_twice(gap);
        // SAFETY: the heads are this test's.
        let (oldest, n) = unsafe { reverse_counting(top) };
        assert!(ptr::eq(oldest, top) && n > 1, "gap {gap}");
        // SAFETY: as above.
        let (_, distinct) = unsafe { cut_cycle(oldest) };
        let mut got = walk(hs, oldest);
        assert_eq!(distinct, got.len() as u64, "gap {gap}");
        got.sort_unstable();
        assert_eq!(got, (1..3 + gap).collect::<Vec<_>>(), "gap {gap}");
    }
}

/// The order `ORDERED` saw its heads invoked in, as indices.
static ORDER: Mutex<Vec<usize>> = Mutex::new(Vec::new());
/// The heads `record` reports, by address.
static ORDERED: Mutex<Vec<usize>> = Mutex::new(Vec::new());

unsafe extern "C" fn record(h: *mut RcuHead) {
    let i = lock(&ORDERED)
        .iter()
        .position(|&a| a == h as usize)
        .unwrap();
    lock(&ORDER).push(i);
}

/// Listed in one walk (no cycle), a batch runs oldest first, each head
/// once, and is counted; the list gives back a flood's room after it.
#[test]
fn a_listed_batch_runs_oldest_first_each_head_once() {
    let mut list = HeadList::default();
    // 5_000 outgrows what the list keeps (it reads ahead across the
    // boundary of its first heads too: fewer than `AHEAD` of them).
    for n in [1, 3, 17, 5_000] {
        let hs = heads(n);
        for h in hs.iter_mut() {
            h.func = Some(record);
        }
        *lock(&ORDERED) = hs.iter().map(|h| ptr::from_ref(h) as usize).collect();
        lock(&ORDER).clear();
        let order: Vec<_> = (0..n).collect();
        let top = stack_of(hs, &order);
        // SAFETY: the heads are this test's, each valid.
        assert_eq!(unsafe { list.collect(top) }, Some(n as u64));
        let invoked = AtomicU64::new(7);
        // SAFETY: as above.
        unsafe { list.invoke_oldest_first(&invoked) };
        assert_eq!(*lock(&ORDER), order, "n {n}");
        assert_eq!(invoked.load(Ordering::Relaxed), 7 + n as u64);
        assert!(list.is_empty_keeping_at_most_its_room());
    }
}

/// A chain with a cycle (a head queued twice) is not listed: the batch
/// falls back to the reversal, which cuts it.
#[test]
fn a_chain_with_a_cycle_is_not_listed() {
    let mut list = HeadList::default();
    for gap in [0, 1, 5] {
        let (_, top) = pushed_twice(gap);
        // SAFETY: the heads are this test's.
        assert_eq!(unsafe { list.collect(top) }, None, "gap {gap}");
        assert!(list.is_empty_keeping_at_most_its_room());
    }
}

/// A flood's batch that runs into a cycle (a head queued twice) far down
/// is not listed, and the room the list grew to before it found the cycle
/// is given back, as after a listed batch: before, it was kept until the
/// next listed batch (8 bytes a head of the flood, for an idle crdp for
/// good).
#[test]
fn a_long_chain_with_a_cycle_leaves_the_list_no_more_room_than_it_keeps() {
    let mut list = HeadList::default();
    let n = 100_000;
    let hs = heads(n);
    // Head 1 queued, then the others, then head 1 again: the oldest of
    // those others links back to it.
    let mut order = vec![0, 1];
    order.extend(2..n);
    order.push(1);
    let top = stack_of(hs, &order);
    // SAFETY: the heads are this test's.
    assert_eq!(unsafe { list.collect(top) }, None);
    assert!(list.is_empty_keeping_at_most_its_room());
}

static RAN_BEFORE_STOP: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn count_before_stop(_: *mut RcuHead) {
    RAN_BEFORE_STOP.fetch_add(1, Ordering::Relaxed);
}

/// As liburcu's `call_rcu_data_free`: the thread, asked to stop while
/// idle, first runs what is queued (before: it stopped at once, and
/// everything went to the default crdp).
#[test]
fn a_thread_stopped_while_idle_runs_what_is_queued_first() {
    let rcu: &'static Rcu = Box::leak(Box::new(
        Rcu::new(rcu_reclaim::Config::new()).expect("a domain"),
    ));
    let crdp = CallRcuData::spawn(rcu, -1, ThreadHooks::NONE);
    let hs: &'static mut [RcuHead] = (0..3)
        .map(|_| RcuHead {
            next: ptr::null_mut(),
            func: Some(count_before_stop),
        })
        .collect::<Vec<_>>()
        .leak();
    for h in hs.iter_mut() {
        crdp.push(h, 0);
    }
    crdp.stop(false);
    assert_eq!(RAN_BEFORE_STOP.load(Ordering::Relaxed), 3);
    assert!(crdp.incoming.load(Ordering::Relaxed).is_null());
    assert_eq!(lock(&crdp.state).done, 3);
}

#[test]
fn callers_fill_the_next_batch_while_one_waits_for_its_grace_period() {
    let rcu = Rcu::global();
    let crdp = CallRcuData::spawn(rcu, -1, ThreadHooks::NONE);
    // A reader holds up every grace period until told to leave.
    let (entered_tx, entered) = mpsc::channel();
    let (leave, leave_rx) = mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let _g = rcu.read_lock();
        entered_tx.send(()).unwrap();
        let _ = leave_rx.recv();
    });
    entered.recv().unwrap();
    // One batch of PUSH_BACK_AT heads, taken whole: queued while the
    // thread is paused, then resumed.
    let first = heads(PUSH_BACK_AT as usize);
    crdp.pause(false);
    for h in first.iter_mut() {
        assert!(!crdp.push(h, 0));
    }
    crdp.resume();
    while crdp.taken.load(Ordering::Relaxed) < PUSH_BACK_AT {
        std::thread::sleep(Duration::from_millis(1));
    }
    // That batch now waits for the reader: the next fills up to the
    // mark without push-back (counting the batch in hand, every one of
    // these would have been over it).
    let second = heads(PUSH_BACK_AT as usize + 1);
    let (last, rest) = second.split_last_mut().unwrap();
    for h in rest.iter_mut() {
        assert!(!crdp.push(h, 0), "held back while the next batch fills");
    }
    assert!(crdp.push(last, 0), "over the mark: push-back");
    assert_eq!(crdp.backlog().0, 2 * PUSH_BACK_AT as usize + 1);
    leave.send(()).unwrap();
    reader.join().unwrap();
    crdp.wait_drained();
    assert_eq!(crdp.backlog().0, 0);
    assert_eq!(RAN.load(Ordering::Relaxed), 2 * PUSH_BACK_AT as usize + 1);
    crdp.stop(false);
}

static RAN_PRESSURED: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn count_pressured(_: *mut RcuHead) {
    RAN_PRESSURED.fetch_add(1, Ordering::Relaxed);
}

/// A head of `run`, leaked (the crdp links it until it runs).
fn head(run: unsafe extern "C" fn(*mut RcuHead)) -> &'static mut RcuHead {
    Box::leak(Box::new(RcuHead {
        next: ptr::null_mut(),
        func: Some(run),
    }))
}

/// Pushes heads of `run` on the paused `crdp` until one is pushed back
/// (the crdp looks at the memory state every `MEMORY_LOOK_EVERY`th
/// head), and no more than that many: how many it pushed.
fn push_until_held(crdp: &CallRcuData, run: unsafe extern "C" fn(*mut RcuHead)) -> usize {
    for n in 1..=MEMORY_LOOK_EVERY as usize {
        if crdp.push(head(run), 0) {
            return n;
        }
    }
    panic!("no push-back within {MEMORY_LOOK_EVERY} heads")
}

#[test]
fn under_memory_pressure_callers_are_held_back_sooner() {
    // A domain of its own: pressure here leaves the other tests' alone.
    let rcu: &'static Rcu = Box::leak(Box::new(
        Rcu::new(rcu_reclaim::Config::new()).expect("a domain"),
    ));
    let crdp = CallRcuData::spawn(rcu, -1, ThreadHooks::NONE);
    crdp.pause(false);
    // Past the mark for short memory, without pressure: not held back.
    let mut n = PUSH_BACK_AT_SHORT as usize + 1;
    for _ in 0..n {
        assert!(
            !crdp.push(head(count_pressured), 0),
            "held back without pressure"
        );
    }
    let pressure = rcu.pressure_start_all();
    n += push_until_held(&crdp, count_pressured);
    pressure.end();
    crdp.resume();
    crdp.wait_drained();
    assert_eq!(crdp.backlog().0, 0);
    assert_eq!(RAN_PRESSURED.load(Ordering::Relaxed), n);
    // Pushed after the drain: a backlog of one again.
    assert!(!crdp.push(head(count_pressured), 0));
    crdp.wait_drained();
    assert_eq!(RAN_PRESSURED.load(Ordering::Relaxed), n + 1);
    crdp.stop(false);
}

static RAN_LIMITED: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn count_limited(_: *mut RcuHead) {
    RAN_LIMITED.fetch_add(1, Ordering::Relaxed);
}

/// Under a memory limit the domain knows (as `spawn` sets from the
/// process's cgroup): nothing held back while the usage is low, past
/// 256 waiting heads while it is over the limit's mark, past 4,096
/// while it is over three quarters of it; all of them run.
#[test]
fn near_a_memory_limit_callers_are_held_back_sooner_still() {
    let rcu: &'static Rcu = Box::leak(Box::new(
        Rcu::new(rcu_reclaim::Config::new()).expect("a domain"),
    ));
    let usage = Arc::new(AtomicUsize::new(10 << 20));
    let read = usage.clone();
    rcu.bound_garbage(80 << 20, move || Some(read.load(Ordering::Relaxed)));
    let crdp = CallRcuData::spawn(rcu, -1, ThreadHooks::NONE);
    // The usage is read again once a millisecond old.
    let set = |bytes: usize| {
        usage.store(bytes, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(2));
    };
    crdp.pause(false);
    let mut n = 2 * PUSH_BACK_AT_OVER as usize;
    for _ in 0..n {
        assert!(
            !crdp.push(head(count_limited), 0),
            "held back with plenty of memory"
        );
    }
    set(90 << 20);
    n += push_until_held(&crdp, count_limited);
    set(70 << 20);
    // Short: not held back until 4,096 wait.
    while n < PUSH_BACK_AT_SHORT as usize {
        assert!(
            !crdp.push(head(count_limited), 0),
            "short, {n} waiting: held back"
        );
        n += 1;
    }
    n += push_until_held(&crdp, count_limited);
    assert!(n > PUSH_BACK_AT_SHORT as usize);
    crdp.resume();
    crdp.wait_drained();
    assert_eq!(RAN_LIMITED.load(Ordering::Relaxed), n);
    crdp.stop(false);
}

static RAN_OVER: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn count_over(_: *mut RcuHead) {
    RAN_OVER.fetch_add(1, Ordering::Relaxed);
}

/// Over a memory limit's mark, a caller pushed back waits for the batch
/// in hand to be invoked, longer than [`PUSH_BACK_WAIT`] if its grace
/// period takes longer (a reader holds it up here for 20 ms): with the
/// millisecond alone, a flood whose crdp thread was short of CPU queued
/// more at every wait that ran out, and a 100 MiB cgroup was OOM-killed.
/// While memory is plenty, the same caller waits a millisecond.
#[test]
fn over_a_limits_mark_callers_wait_for_the_batch_in_hand() {
    let rcu: &'static Rcu = Box::leak(Box::new(
        Rcu::new(rcu_reclaim::Config::new()).expect("a domain"),
    ));
    let usage = Arc::new(AtomicUsize::new(90 << 20));
    let read = usage.clone();
    rcu.bound_garbage(80 << 20, move || Some(read.load(Ordering::Relaxed)));
    let crdp = CallRcuData::spawn(rcu, -1, ThreadHooks::NONE);
    // A batch waiting for a reader, and 2 * PUSH_BACK_AT_OVER heads
    // waiting behind it (whether `push` said to push back); returns that
    // and how long `push_back` waited with the reader leaving after
    // `hold`.
    let wait_with_reader_for = |hold: Duration| {
        let (entered_tx, entered) = mpsc::channel();
        let (leave_tx, leave) = mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let _guard = rcu.read_lock();
            entered_tx.send(()).unwrap();
            leave.recv().unwrap();
        });
        entered.recv().unwrap();
        crdp.push(head(count_over), 0);
        while !crdp.awaiting_gp.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut held = false;
        for _ in 0..2 * PUSH_BACK_AT_OVER {
            held |= crdp.push(head(count_over), 0);
        }
        let start = std::time::Instant::now();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(hold);
            leave_tx.send(()).unwrap();
        });
        crdp.push_back();
        let waited = start.elapsed();
        releaser.join().unwrap();
        reader.join().unwrap();
        crdp.wait_drained();
        (held, waited)
    };
    let (held, waited) = wait_with_reader_for(Duration::from_millis(20));
    assert!(held, "over the mark and never pushed back");
    assert!(
        waited >= Duration::from_millis(15),
        "over the mark, waited {waited:?}, not for the batch in hand"
    );
    // Plenty: a millisecond, not the reader's 200 ms.
    usage.store(10 << 20, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(2));
    assert_eq!(rcu.memory_state(), MemoryState::Plenty);
    let (held, waited) = wait_with_reader_for(Duration::from_millis(200));
    assert!(!held, "pushed back with plenty of memory");
    assert!(
        waited < Duration::from_millis(150),
        "with plenty of memory, waited {waited:?}"
    );
    assert_eq!(
        RAN_OVER.load(Ordering::Relaxed),
        2 * (1 + 2 * PUSH_BACK_AT_OVER as usize)
    );
    crdp.stop(false);
}
