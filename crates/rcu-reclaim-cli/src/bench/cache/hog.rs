//! The memory hog of the cache scenario under `--cgroup-limit`: a thread in
//! the cache's own process that maps memory and touches it, up to a peak,
//! holds it, gives it all back, and starts again, as another part of a
//! program (or another tenant of the cgroup) would.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// What the hog maps at a time.
const CHUNK: usize = 4 << 20;
/// Between two chunks, growing or shrinking: about 400 MiB/s.
const STEP: Duration = Duration::from_millis(10);
/// How long it holds its peak, and then nothing.
const HOLD: Duration = Duration::from_millis(300);

/// One mapped, touched chunk; unmapped when dropped (straight back to the
/// kernel, which the allocator would not promise).
struct Chunk(*mut libc::c_void);

// SAFETY: the mapping is owned by the chunk alone.
unsafe impl Send for Chunk {}

impl Chunk {
    fn map() -> Option<Chunk> {
        // SAFETY: an anonymous private mapping, no address hint.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                CHUNK,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        // Touch every page, so the cgroup charges it.
        for off in (0..CHUNK).step_by(4096) {
            // SAFETY: `off` is inside the CHUNK bytes just mapped writable.
            unsafe { p.cast::<u8>().add(off).write_volatile(1) };
        }
        Some(Chunk(p))
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // SAFETY: `self.0` is a live mapping of CHUNK bytes owned by us.
        unsafe { libc::munmap(self.0, CHUNK) };
    }
}

/// A running hog: stop it with [`Hog::stop`] (dropped, it stops too, and
/// unmaps its memory on its own thread).
pub struct Hog {
    stop: Arc<AtomicBool>,
    held: Arc<AtomicUsize>,
    thread: Option<JoinHandle<usize>>,
}

impl Hog {
    /// Starts a hog that cycles between 0 and `peak` bytes.
    pub fn start(peak: usize) -> Result<Hog, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(AtomicUsize::new(0));
        let (s, h) = (stop.clone(), held.clone());
        let thread = thread::Builder::new()
            .name("cache-hog".into())
            .spawn(move || {
                let (mut chunks, mut cycles) = (Vec::new(), 0);
                let wait = |d: Duration| {
                    thread::sleep(d);
                    !s.load(Ordering::Relaxed)
                };
                'run: loop {
                    while chunks.len() * CHUNK < peak {
                        match Chunk::map() {
                            Some(c) => chunks.push(c),
                            None => break,
                        }
                        h.store(chunks.len() * CHUNK, Ordering::Relaxed);
                        if !wait(STEP) {
                            break 'run;
                        }
                    }
                    if !wait(HOLD) {
                        break;
                    }
                    while chunks.pop().is_some() {
                        h.store(chunks.len() * CHUNK, Ordering::Relaxed);
                        if !wait(STEP) {
                            break 'run;
                        }
                    }
                    cycles += 1;
                    if !wait(HOLD) {
                        break;
                    }
                }
                cycles
            })
            .map_err(|e| format!("cannot start the memory hog: {e}"))?;
        Ok(Hog {
            stop,
            held,
            thread: Some(thread),
        })
    }

    /// Bytes it holds now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Stops it, gives its memory back, and returns the cycles it completed.
    pub fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap_or(0))
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::cache::run::rss;

    #[test]
    fn the_hog_grows_to_its_peak_and_gives_it_back() {
        let _one = crate::bench::cache::run::tests::one_at_a_time();
        let base = rss();
        let hog = Hog::start(32 << 20).unwrap();
        let mut top = 0;
        for _ in 0..200 {
            top = top.max(hog.held());
            if top >= 32 << 20 {
                break;
            }
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(top, 32 << 20);
        assert!(rss() >= base + (24 << 20), "the chunks are touched");
        hog.stop();
        assert!(rss() < base + (16 << 20), "and unmapped");
    }
}
