//! Handle values that survive a change of the MIG layout: a handle is the address of a small
//! leaked object, one per identity (a GPU by UUID, a GPU or compute instance by its GPU's UUID
//! and ids, a MIG device likewise), made the first time the identity is seen in this process.
//! So a client's GPU handle stays valid after it creates an instance on that GPU (the state is
//! rebuilt), and the handle a create returns is the one later lookups hand out.
//!
//! The objects are never freed: one per instance ever seen, a few bytes each. An instance that
//! is destroyed and made again with the same ids gets its old handle back.

use std::collections::HashMap;
use std::sync::Mutex;

/// What a handle stands for, independent of positions in the state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Gpu(String),
    Gi(String, u32),
    Ci(String, u32, u32),
    Mig(String, u32, u32),
}

/// The object a handle points at. Never read through a handle: only its address matters, and it
/// is not zero-sized so that every handle has its own address.
struct Slot {
    _tag: u64,
}

static HANDLES: Mutex<Option<HashMap<Key, usize>>> = Mutex::new(None);

/// The handle of `key`, the same for the life of the process.
pub fn handle(key: Key) -> usize {
    let mut guard = HANDLES.lock().unwrap_or_else(|e| e.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    *map.entry(key).or_insert_with(|| {
        let slot: &'static Slot = Box::leak(Box::new(Slot {
            _tag: 0x6e76_6d6c_5f73_696d,
        }));
        slot as *const Slot as usize
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_handle_per_identity() {
        let a = handle(Key::Gi("GPU-x".into(), 7));
        assert_eq!(a, handle(Key::Gi("GPU-x".into(), 7)));
        assert_ne!(a, handle(Key::Gi("GPU-x".into(), 8)));
        assert_ne!(a, handle(Key::Ci("GPU-x".into(), 7, 0)));
        assert_ne!(a, 0);
    }
}
