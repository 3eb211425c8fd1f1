//! What a batch replaced or removed in its copy of the table, kept until the
//! writer lock is released: user `Drop` code never runs under the lock, so a
//! destructor may write to the map (or block on something a writer holds).

use hashbrown::HashMap;

/// Keys, values, entries and whole tables a batch took out of its copy.
/// Dropping it drops them; nothing allocates until something is buried.
pub(crate) struct Graveyard<K, V, S> {
    keys: Vec<K>,
    values: Vec<V>,
    entries: Vec<(K, V)>,
    tables: Vec<HashMap<K, V, S>>,
}

impl<K, V, S> Graveyard<K, V, S> {
    pub(crate) fn new() -> Self {
        Graveyard {
            keys: Vec::new(),
            values: Vec::new(),
            entries: Vec::new(),
            tables: Vec::new(),
        }
    }

    /// A key the copy did not keep: one removed (its value handed back), or
    /// the key given to an insert over a key already present.
    pub(crate) fn key(&mut self, key: K) {
        self.keys.push(key);
    }

    /// A value replaced in the copy.
    pub(crate) fn value(&mut self, value: V) {
        self.values.push(value);
    }

    /// An entry removed from the copy.
    pub(crate) fn entry(&mut self, key: K, value: V) {
        self.entries.push((key, value));
    }

    /// A whole copy thrown away (a `clear` after earlier changes).
    pub(crate) fn table(&mut self, table: HashMap<K, V, S>) {
        self.tables.push(table);
    }
}
