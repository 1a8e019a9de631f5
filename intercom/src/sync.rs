//! Small synchronisation helpers shared by the runtime's modules.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`. A poisoned lock only means another task panicked mid-update of plain data
/// (maps, options); the data is still usable, so the guard is taken either way.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
