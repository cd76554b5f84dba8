//! Values that turn to poison when dropped, and a count of each one's
//! drops: a reader that sees poison read freed memory, and a count other
//! than one is a leak or a double free.

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use rcu_reclaim::ReclaimSize;

/// A live value's magic word.
pub const ALIVE: u64 = 0xA11C_E0A1_1CE0_A11C;
/// What a dropped value's magic word turns to.
pub const POISON: u64 = 0xDEAD_DEAD_DEAD_DEAD;

/// Counts each value's drops by id.
pub struct Drops {
    created: AtomicUsize,
    drops: Vec<AtomicU8>,
}

impl Drops {
    /// Room for `max` values' counts.
    pub fn new(max: usize) -> Arc<Drops> {
        Arc::new(Drops {
            created: AtomicUsize::new(0),
            drops: (0..max).map(|_| AtomicU8::new(0)).collect(),
        })
    }

    /// Every value made so far was dropped exactly once.
    pub fn assert_each_dropped_once(&self) {
        let made = self.created.load(Ordering::Relaxed);
        assert!(made <= self.drops.len(), "raise the id limit");
        for (id, d) in self.drops[..made].iter().enumerate() {
            assert_eq!(
                d.load(Ordering::Relaxed),
                1,
                "value {id} dropped that many times"
            );
        }
    }

    /// How many times value `id` was dropped.
    pub fn dropped(&self, id: usize) -> u8 {
        self.drops[id].load(Ordering::Relaxed)
    }
}

/// A value whose magic word turns to poison when dropped.
pub struct Val {
    magic: AtomicU64,
    key: u64,
    id: usize,
    drops: Arc<Drops>,
}

impl Val {
    /// A new value of `key`, counted in `drops`.
    pub fn new(drops: &Arc<Drops>, key: u64) -> Val {
        Val {
            magic: AtomicU64::new(ALIVE),
            key,
            id: drops.created.fetch_add(1, Ordering::Relaxed),
            drops: drops.clone(),
        }
    }

    /// Panics if a reader sees a dropped value or another key's.
    pub fn check(&self, key: u64) {
        assert_eq!(
            self.magic.load(Ordering::Relaxed),
            ALIVE,
            "a reader saw poison"
        );
        assert_eq!(self.key, key);
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        self.magic.store(POISON, Ordering::Relaxed);
        if let Some(d) = self.drops.drops.get(self.id) {
            d.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl ReclaimSize for Val {
    fn reclaim_size(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

/// The smallest poisoned value: one word that reads [`ALIVE`] until the
/// value is dropped, then [`POISON`], for a reader to check with
/// [`Word::get`].
pub struct Word(AtomicU64);

impl Word {
    /// A live word, boxed for a cell.
    pub fn alive() -> Box<Word> {
        Box::new(Word(AtomicU64::new(ALIVE)))
    }

    /// What the word reads now: [`ALIVE`], or [`POISON`] once dropped.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl Drop for Word {
    fn drop(&mut self) {
        self.0.store(POISON, Ordering::SeqCst);
    }
}

impl ReclaimSize for Word {
    fn reclaim_size(&self) -> usize {
        std::mem::size_of::<Word>()
    }
}
