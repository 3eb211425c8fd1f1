//! [`Batch`]: the transaction a [`SnapshotMap`](crate::SnapshotMap) writer edits
//! before publishing it as one version.

use core::borrow::Borrow;
use core::fmt;
use core::hash::{BuildHasher, Hash};

use hashbrown::HashMap;

use super::graveyard::Graveyard;
use super::snapshot::SnapshotIter;
use super::version::Version;

/// A set of changes to a [`SnapshotMap`](crate::SnapshotMap), published as one
/// new version when the closure given to
/// [`batch`](crate::SnapshotMap::batch) or
/// [`try_batch`](crate::SnapshotMap::try_batch) returns — readers see all of it
/// or none of it.
///
/// Reads through the batch see its own changes. The first change copies the
/// current table (once, O(len)); later changes are plain hash-map operations on
/// the copy. A batch that changes nothing copies and publishes nothing. Writers
/// are serialized: while a batch is open, other writers wait, and readers keep
/// reading the version the batch started from.
///
/// Values the batch replaces or removes without handing them to you
/// ([`update`](Batch::update), [`retain`](Batch::retain), [`clear`](Batch::clear),
/// `extend`) are dropped after the writer lock is released, when the batch has
/// ended: their `Drop` may write to the map, and so are the keys it removes and
/// the keys given to `insert` or `extend` for a key already present (the table
/// keeps the key it has). Values it hands back ([`insert`](Batch::insert),
/// [`remove`](Batch::remove)) are dropped wherever the closure drops them.
///
/// # Examples
///
/// ```
/// use readmostly::SnapshotMap;
///
/// let accounts: SnapshotMap<_, _> = [("alice", 100), ("bob", 0)].into_iter().collect();
/// accounts.batch(|txn| {
///     let amount = 30;
///     txn.update("alice", |v| v - amount);
///     txn.update("bob", |v| v + amount);
///     assert_eq!(txn.get("bob"), Some(&30)); // the batch sees its own changes
/// });
/// assert_eq!(accounts.get_cloned("alice"), Some(70));
/// ```
pub struct Batch<'a, K, V, S> {
    base: &'a Version<K, V, S>,
    /// The copy being edited; `None` until the first change.
    next: Option<HashMap<K, V, S>>,
    /// Entries cloned from `base` into `next`; `None` when `next` was built
    /// from scratch (or not at all).
    copied: Option<usize>,
    /// What the batch took out of `next`, dropped after the writer lock is released.
    buried: Graveyard<K, V, S>,
}

impl<'a, K, V, S> Batch<'a, K, V, S> {
    pub(crate) fn new(base: &'a Version<K, V, S>) -> Self {
        Batch {
            base,
            next: None,
            copied: None,
            buried: Graveyard::new(),
        }
    }

    /// The table as this batch sees it.
    fn view(&self) -> &HashMap<K, V, S> {
        self.next.as_ref().unwrap_or(&self.base.table)
    }

    /// Whether the batch started from `version`.
    pub(crate) fn is_based_on(&self, version: &Version<K, V, S>) -> bool {
        core::ptr::eq(self.base, version)
    }

    /// The new table, if the batch changed anything, and the entries it copied;
    /// and what the batch took out of its copy, to drop once the lock is released.
    #[allow(clippy::type_complexity)]
    pub(crate) fn into_parts(
        self,
    ) -> (
        Option<(HashMap<K, V, S>, Option<usize>)>,
        Graveyard<K, V, S>,
    ) {
        (self.next.map(|table| (table, self.copied)), self.buried)
    }

    /// The number of the version this batch started from; it publishes the next.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// map.insert(1, 1);
    /// map.batch(|txn| {
    ///     assert_eq!(txn.base_version(), 1);
    ///     txn.insert(2, 2);
    /// });
    /// assert_eq!(map.version(), 2);
    /// ```
    pub fn base_version(&self) -> u64 {
        self.base.number
    }

    /// Whether the batch has changed anything yet (and so will publish).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map: SnapshotMap<u8, u8> = SnapshotMap::new();
    /// map.batch(|txn| {
    ///     assert!(txn.remove(&1).is_none());
    ///     assert!(!txn.is_changed()); // removing an absent key changes nothing
    /// });
    /// assert_eq!(map.version(), 0);
    /// ```
    pub fn is_changed(&self) -> bool {
        self.next.is_some()
    }

    /// Keys as the batch sees them.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// map.batch(|txn| {
    ///     txn.insert("a", 1);
    ///     assert_eq!(txn.len(), 1);
    /// });
    /// ```
    pub fn len(&self) -> usize {
        self.view().len()
    }

    /// Whether the batch sees no keys.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map: SnapshotMap<u8, u8> = SnapshotMap::new();
    /// map.batch(|txn| assert!(txn.is_empty()));
    /// ```
    pub fn is_empty(&self) -> bool {
        self.view().is_empty()
    }

    /// How many keys the batch's table holds before it must grow: the current
    /// version's capacity until the first change, then the copy's.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map: SnapshotMap<u32, u32> = SnapshotMap::new();
    /// map.batch(|txn| {
    ///     txn.reserve(100);
    ///     assert!(txn.capacity() >= 100);
    /// });
    /// ```
    pub fn capacity(&self) -> usize {
        self.view().capacity()
    }

    /// The entries as the batch sees them, in arbitrary order.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map: SnapshotMap<_, _> = [(1, 10), (2, 20)].into_iter().collect();
    /// let total = map.batch(|txn| {
    ///     txn.insert(3, 30);
    ///     txn.iter().map(|(_, v)| v).sum::<i32>()
    /// });
    /// assert_eq!(total, 60);
    /// ```
    pub fn iter(&self) -> SnapshotIter<'_, K, V> {
        SnapshotIter::new(self.view().iter())
    }
}

impl<K, V, S> Batch<'_, K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    /// `key`'s value as the batch sees it.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// map.insert("a", 1);
    /// map.batch(|txn| {
    ///     assert_eq!(txn.get("a"), Some(&1));
    ///     txn.remove("a");
    ///     assert_eq!(txn.get("a"), None);
    /// });
    /// ```
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.view().get(key)
    }

    /// Whether the batch sees `key`.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// map.batch(|txn| {
    ///     txn.insert(1, ());
    ///     assert!(txn.contains_key(&1));
    /// });
    /// ```
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.view().contains_key(key)
    }
}

impl<K, V, S> Batch<'_, K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Clone,
{
    /// The table to change, copying the base on the first change.
    fn table(&mut self) -> &mut HashMap<K, V, S> {
        self.table_and_graveyard().0
    }

    /// [`table`](Self::table), and where to put what the change takes out.
    fn table_and_graveyard(&mut self) -> (&mut HashMap<K, V, S>, &mut Graveyard<K, V, S>) {
        let (base, copied) = (self.base, &mut self.copied);
        let table = self.next.get_or_insert_with(|| copy(base, copied));
        (table, &mut self.buried)
    }

    /// Inserts `value` for `key`, returning the value it replaces in the batch.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// map.insert("a", 1);
    /// map.batch(|txn| {
    ///     assert_eq!(txn.insert("a", 2), Some(1));
    ///     assert_eq!(txn.insert("b", 3), None);
    /// });
    /// assert_eq!(map.len(), 2);
    /// ```
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let (table, buried) = self.table_and_graveyard();
        put(table, buried, key, value)
    }

    /// Replaces the value of `key`, which must be present, and returns the old
    /// one (from the copy: the caller drops it, outside the lock).
    pub(crate) fn replace_value<Q>(&mut self, key: &Q, value: V) -> V
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let slot = self
            .table()
            .get_mut(key)
            .expect("replace_value of a present key");
        core::mem::replace(slot, value)
    }

    /// Removes `key`, returning its value. Removing an absent key changes nothing
    /// (and copies nothing).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// map.insert("a", 1);
    /// map.batch(|txn| assert_eq!(txn.remove("a"), Some(1)));
    /// assert!(map.is_empty());
    /// ```
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if !self.contains_key(key) {
            return None;
        }
        let (table, buried) = self.table_and_graveyard();
        let (key, value) = table.remove_entry(key)?;
        buried.key(key);
        Some(value)
    }

    /// Replaces `key`'s value with `f(current)` and returns the new value; does
    /// nothing and returns `None` if the key is absent. If `f` panics, the batch
    /// is aborted like any other panic in it. The replaced value is dropped after
    /// the batch, outside the writer lock.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let hits = SnapshotMap::new();
    /// hits.insert("/", 1u64);
    /// hits.batch(|txn| {
    ///     assert_eq!(txn.update("/", |n| n + 1), Some(&2));
    ///     assert_eq!(txn.update("/missing", |n| n + 1), None);
    /// });
    /// ```
    pub fn update<Q>(&mut self, key: &Q, f: impl FnOnce(&V) -> V) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let new = f(self.get(key)?);
        let (table, buried) = self.table_and_graveyard();
        let slot = table.get_mut(key)?;
        buried.value(core::mem::replace(slot, new));
        Some(slot)
    }

    /// Keeps only the entries for which `keep` returns true. Removing nothing
    /// changes nothing. Removed entries of the batch's copy are dropped after the
    /// batch, outside the writer lock.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map: SnapshotMap<_, _> = (0..10).map(|i| (i, i)).collect();
    /// map.batch(|txn| txn.retain(|_, v| v % 2 == 0));
    /// assert_eq!(map.len(), 5);
    /// ```
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        if let Some(table) = &mut self.next {
            for (k, v) in table.extract_if(|k, v| !keep(k, v)) {
                self.buried.entry(k, v);
            }
            return;
        }
        // Not copied yet: `keep` judges every entry before anything is cloned,
        // so a `retain` that keeps everything clones nothing, and a panicking
        // `keep` leaves nothing to drop under the lock. Then only the kept
        // entries are copied, into a table with the current one's room (`seal`
        // trims it if it ends up under a quarter full).
        let base = &self.base.table;
        let verdicts: Vec<bool> = base.iter().map(|(k, v)| keep(k, v)).collect();
        if verdicts.iter().all(|&kept| kept) {
            return;
        }
        let kept = base.iter().zip(&verdicts).filter(|(_, &keep)| keep);
        self.copy_entries(
            empty_like(base, base.capacity()),
            kept.map(|(entry, _)| entry),
        );
    }

    /// Removes every key, without copying the current table. (A copy made by
    /// earlier changes is dropped after the batch, outside the writer lock.)
    /// Clearing a batch that sees no keys changes nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map: SnapshotMap<_, _> = (0..10).map(|i| (i, i)).collect();
    /// map.batch(|txn| {
    ///     txn.clear();
    ///     txn.insert(99, 99);
    /// });
    /// assert_eq!(map.len(), 1);
    /// ```
    pub fn clear(&mut self) {
        if self.view().is_empty() {
            return;
        }
        let hasher = self.view().hasher().clone();
        if let Some(copy) = self.next.replace(HashMap::with_hasher(hasher)) {
            self.buried.table(copy);
        }
        // A copy made before stays counted in `copied`: its clones were paid.
    }

    /// Makes room for at least `additional` more keys, so that inserting them
    /// does not grow the table step by step. Copies the table (sized for them
    /// at once) if it has not been copied yet and lacks the room; does nothing
    /// when the room is there.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map: SnapshotMap<u32, u32> = SnapshotMap::new();
    /// map.batch(|txn| {
    ///     txn.reserve(10_000);
    ///     txn.extend((0..10_000).map(|i| (i, i)));
    /// });
    /// assert_eq!(map.len(), 10_000);
    /// ```
    pub fn reserve(&mut self, additional: usize) {
        let view = self.view();
        if view.capacity() - view.len() >= additional {
            return;
        }
        match &mut self.next {
            Some(table) => table.reserve(additional),
            None => {
                let base = &self.base.table;
                let table = empty_like(base, base.len().saturating_add(additional));
                self.copy_entries(table, base.iter());
            }
        }
    }

    /// Shrinks the table to the smallest that holds its keys, if that frees
    /// memory; otherwise changes nothing (and copies nothing).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map: SnapshotMap<u32, u32> = SnapshotMap::new();
    /// map.reserve(1000);
    /// map.batch(|txn| txn.shrink_to_fit());
    /// assert!(map.capacity() < 1000);
    /// ```
    pub fn shrink_to_fit(&mut self) {
        match &mut self.next {
            Some(table) => table.shrink_to_fit(),
            None => {
                let base = &self.base.table;
                let table = empty_like(base, base.len());
                if table.capacity() < base.capacity() {
                    self.copy_entries(table, base.iter());
                }
            }
        }
    }

    /// Makes the batch's copy: clones of `entries` (of the base) in `table`.
    /// If a `Clone` panics, the entries already cloned are dropped after the
    /// lock is released ([`Filling`]).
    fn copy_entries<'e>(
        &mut self,
        table: HashMap<K, V, S>,
        entries: impl Iterator<Item = (&'e K, &'e V)>,
    ) where
        K: 'e,
        V: 'e,
    {
        let mut filling = Filling {
            table: Some(table),
            buried: &mut self.buried,
        };
        let table = filling.table.as_mut().expect("filling");
        for (k, v) in entries {
            table.insert(k.clone(), v.clone());
        }
        let table = filling.table.take().expect("filled once");
        self.copied = Some(table.len());
        self.next = Some(table);
    }

    /// Closes the batch before it is published: gives memory back if it removed
    /// keys and left its copy under a quarter full. Rehashes (runs `Hash`).
    pub(crate) fn seal(&mut self) {
        if let Some(table) = &mut self.next {
            if table.len() < self.base.table.len() {
                trim(table);
            }
        }
    }
}

/// Inserts `value` for `key` into `table` and returns the value it replaces.
/// Over a key already present, the table keeps its own key and `key` goes to
/// `buried` (`HashMap::insert` would drop it here, under the writer lock).
fn put<K: Hash + Eq, V, S: BuildHasher>(
    table: &mut HashMap<K, V, S>,
    buried: &mut Graveyard<K, V, S>,
    key: K,
    value: V,
) -> Option<V> {
    match table.get_mut(&key) {
        Some(slot) => {
            let old = core::mem::replace(slot, value);
            buried.key(key);
            Some(old)
        }
        None => {
            table.insert(key, value);
            None
        }
    }
}

/// An empty table with `base`'s hasher and room for `capacity` keys.
fn empty_like<K, V, S: Clone>(base: &HashMap<K, V, S>, capacity: usize) -> HashMap<K, V, S> {
    HashMap::with_capacity_and_hasher(capacity, base.hasher().clone())
}

/// The batch's copy while [`Batch::copy_entries`] fills it: if a `Clone`
/// panics, what it holds goes to the graveyard, so the entries already cloned
/// are dropped after the lock is released, like the rest of an aborted batch.
struct Filling<'g, K, V, S> {
    /// `None` once filled.
    table: Option<HashMap<K, V, S>>,
    buried: &'g mut Graveyard<K, V, S>,
}

impl<K, V, S> Drop for Filling<'_, K, V, S> {
    fn drop(&mut self) {
        if let Some(table) = self.table.take() {
            self.buried.table(table);
        }
    }
}

/// A copy of `base`'s table, noting how many entries it cloned. hashbrown
/// clones the table whole (no rehash); if a `Clone` panics, it drops the
/// entries already cloned as the panic unwinds, under the writer lock.
fn copy<K: Clone, V: Clone, S: Clone>(
    base: &Version<K, V, S>,
    copied: &mut Option<usize>,
) -> HashMap<K, V, S> {
    *copied = Some(base.table.len());
    base.table.clone()
}

/// Shrinks a table about to be published if it is large and under a quarter
/// full: a copy keeps its source's capacity, so after mass removals this gives
/// the memory back (one rehash of what is left, cheaper than the copy was).
pub(crate) fn trim<K: Hash + Eq, V, S: BuildHasher>(table: &mut HashMap<K, V, S>) {
    if table.capacity() > 64 && table.len() * 4 < table.capacity() {
        table.shrink_to_fit();
    }
}

impl<K, V, S> Extend<(K, V)> for Batch<'_, K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Clone,
{
    /// Inserts every pair (an empty iterator changes nothing). Values replaced
    /// are dropped after the batch, outside the writer lock.
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        let mut iter = iter.into_iter().peekable();
        if iter.peek().is_none() {
            return;
        }
        let (lower, _) = iter.size_hint();
        let (table, buried) = self.table_and_graveyard();
        // As `HashMap::extend` reserves: all of the hint when empty, half otherwise
        // (duplicates are likely when the table already has keys).
        table.reserve(if table.is_empty() {
            lower
        } else {
            lower.div_ceil(2)
        });
        for (key, value) in iter {
            if let Some(old) = put(table, buried, key, value) {
                buried.value(old);
            }
        }
    }
}

impl<'a, K, V, S> Extend<(&'a K, &'a V)> for Batch<'_, K, V, S>
where
    K: Hash + Eq + Copy,
    V: Copy,
    S: BuildHasher + Clone,
{
    /// Inserts a copy of every pair, as `HashMap`'s `Extend<(&K, &V)>` does.
    fn extend<I: IntoIterator<Item = (&'a K, &'a V)>>(&mut self, iter: I) {
        self.extend(iter.into_iter().map(|(k, v)| (*k, *v)));
    }
}

impl<K, V, S> fmt::Debug for Batch<'_, K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("base_version", &self.base.number)
            .field("changed", &self.next.is_some())
            .field("len", &self.view().len())
            .finish()
    }
}
