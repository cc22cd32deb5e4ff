//! The one lock helper the native shells (agent, relay) share. The protocol itself holds no
//! locks and starts no threads; this lives here only because every shell depends on this crate.

use std::sync::{Mutex, MutexGuard};

/// Lock `mutex`, taking the data even if a thread panicked while holding it: poisoning only
/// means an update may be half done, and every value we guard stays usable (counters, maps),
/// so the best we have beats taking the whole process down.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
