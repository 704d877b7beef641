//! Locking shared by the crate's parts (the issuer, the settler, the fence, the worker
//! and the in-memory adapters).

/// Locks a std mutex, recovering the data of a poisoned one: every critical section in
/// the crate leaves its data consistent before anything that could panic.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
