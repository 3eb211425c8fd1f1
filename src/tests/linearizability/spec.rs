//! The sequential specification of one key of a map: the state is the key's value
//! (`None`: absent), and every operation the maps offer, projected onto one key,
//! is a function from a state to a result and a next state.
//!
//! Multi-key operations (`clear`, `retain`, `SnapshotMap::batch`,
//! `replace_all`, a read of several keys from one snapshot) project onto each key
//! they touch: linearizability is compositional (Herlihy & Wing), so a history is
//! linearizable iff each per-key sub-history is, when every operation acts on
//! each key at one instant inside its interval. For the multi-key atomic ones
//! (batches, snapshots) that is a consequence of their stronger guarantee.

use std::fmt;

/// A value the harness writes. Every write of a history writes a value no other
/// write of it writes, so a read names the write it read from.
pub type Value = u64;

/// One operation on one key, with its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyOp {
    /// `get`, `get_cloned`, a snapshot read: returns the value.
    Get,
    /// `contains_key`.
    Contains,
    /// `insert(v)`: returns the previous value.
    Insert(Value),
    /// `insert(v)` whose result the caller did not observe (`replace_all`).
    Set(Option<Value>),
    /// `remove`: returns the removed value.
    Remove,
    /// `get_or_insert(v)` / `get_or_insert_with(|| v)`.
    GetOrInsert(Value),
    /// `compare_exchange(expected, new)`.
    CompareExchange { expected: Value, new: Value },
    /// `update(|v| bump(v, tag))`: returns the new value.
    Update(Value),
    /// `remove_if(|v| *v == expected)`: returns the removed value.
    RemoveIf(Value),
    /// `clear`, projected: the key is absent afterwards. No result.
    Clear,
    /// `retain(|_, v| keep(v))`, projected. No result.
    Retain,
    /// Several sub-operations applied atomically in order (a `SnapshotMap`
    /// batch), each with its own result.
    Atomic(Vec<(KeyOp, Ret)>),
}

/// What an operation returned, as far as the key is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ret {
    /// A value or its absence (get, insert's previous value, remove, update…).
    Val(Option<Value>),
    Bool(bool),
    /// `get_or_insert`: whether this call stored, and the value after it.
    LoadOrStore {
        stored: bool,
        value: Value,
    },
    /// `compare_exchange`: `Ok(previous)` or `Err(current)`.
    Cas(Result<Value, Option<Value>>),
    /// Nothing observed (blind writes, `clear`, `retain`, batches).
    Unit,
}

/// The deterministic function `update` applies (shared by the harness, which
/// runs it inside the map, and the specification).
pub fn bump(old: Value, tag: Value) -> Value {
    (old ^ tag)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(17)
}

/// The predicate `retain` keeps values by.
pub fn keep(value: Value) -> bool {
    !value.is_multiple_of(3)
}

/// Applies `op` to `state`: the result the specification requires and the next
/// state.
pub fn apply(op: &KeyOp, state: Option<Value>) -> (Ret, Option<Value>) {
    match *op {
        KeyOp::Get => (Ret::Val(state), state),
        KeyOp::Contains => (Ret::Bool(state.is_some()), state),
        KeyOp::Insert(v) => (Ret::Val(state), Some(v)),
        KeyOp::Set(v) => (Ret::Unit, v),
        KeyOp::Remove => (Ret::Val(state), None),
        KeyOp::GetOrInsert(v) => match state {
            Some(current) => (
                Ret::LoadOrStore {
                    stored: false,
                    value: current,
                },
                state,
            ),
            None => (
                Ret::LoadOrStore {
                    stored: true,
                    value: v,
                },
                Some(v),
            ),
        },
        KeyOp::CompareExchange { expected, new } => match state {
            Some(current) if current == expected => (Ret::Cas(Ok(current)), Some(new)),
            _ => (Ret::Cas(Err(state)), state),
        },
        KeyOp::Update(tag) => {
            let next = state.map(|v| bump(v, tag));
            (Ret::Val(next), next)
        }
        KeyOp::RemoveIf(expected) => match state {
            Some(current) if current == expected => (Ret::Val(state), None),
            _ => (Ret::Val(None), state),
        },
        KeyOp::Clear => (Ret::Unit, None),
        KeyOp::Retain => (Ret::Unit, state.filter(|v| keep(*v))),
        KeyOp::Atomic(ref steps) => {
            let mut state = state;
            for (step, _) in steps {
                state = apply(step, state).1;
            }
            (Ret::Unit, state)
        }
    }
}

/// Whether `op` returning `ret` from `state` is allowed, and the next state.
pub fn step(op: &KeyOp, ret: &Ret, state: Option<Value>) -> Option<Option<Value>> {
    if let KeyOp::Atomic(steps) = op {
        let mut state = state;
        for (sub, sub_ret) in steps {
            state = step(sub, sub_ret, state)?;
        }
        return Some(state);
    }
    let (expected, next) = apply(op, state);
    (expected == *ret).then_some(next)
}

impl fmt::Display for KeyOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyOp::Get => f.write_str("get"),
            KeyOp::Contains => f.write_str("contains"),
            KeyOp::Insert(v) => write!(f, "insert({v:#x})"),
            KeyOp::Set(Some(v)) => write!(f, "set({v:#x})"),
            KeyOp::Set(None) => f.write_str("set(absent)"),
            KeyOp::Remove => f.write_str("remove"),
            KeyOp::GetOrInsert(v) => write!(f, "get_or_insert({v:#x})"),
            KeyOp::CompareExchange { expected, new } => {
                write!(f, "compare_exchange({expected:#x} -> {new:#x})")
            }
            KeyOp::Update(tag) => write!(f, "update(tag {tag:#x})"),
            KeyOp::RemoveIf(v) => write!(f, "remove_if(== {v:#x})"),
            KeyOp::Clear => f.write_str("clear"),
            KeyOp::Retain => f.write_str("retain"),
            KeyOp::Atomic(steps) => {
                f.write_str("batch[")?;
                for (i, (op, ret)) in steps.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{op} -> {ret}")?;
                }
                f.write_str("]")
            }
        }
    }
}

impl fmt::Display for Ret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ret::Val(Some(v)) => write!(f, "{v:#x}"),
            Ret::Val(None) => f.write_str("none"),
            Ret::Bool(b) => write!(f, "{b}"),
            Ret::LoadOrStore {
                stored: true,
                value,
            } => write!(f, "stored {value:#x}"),
            Ret::LoadOrStore {
                stored: false,
                value,
            } => write!(f, "loaded {value:#x}"),
            Ret::Cas(Ok(v)) => write!(f, "ok(was {v:#x})"),
            Ret::Cas(Err(Some(v))) => write!(f, "err(found {v:#x})"),
            Ret::Cas(Err(None)) => f.write_str("err(absent)"),
            Ret::Unit => f.write_str("()"),
        }
    }
}
