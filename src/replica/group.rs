//! Cutting the watch stream into whole etcd revisions.
//!
//! etcd sends a watch's events in revision order, each carrying the revision
//! that made it (`mod_revision`; a delete's is the delete's revision). One
//! response may hold many revisions (a watch catching up gets up to a thousand
//! per response), and one revision may span several responses when the watch
//! asks for fragments: every response but the last piece is then marked
//! `fragment`. So a revision is complete when an event of a later revision
//! arrives, or when a response that is not a fragment ends — never merely
//! because a response ended.

/// One key's change in one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyChange {
    /// The full etcd key.
    pub(crate) key: Vec<u8>,
    /// The new value, or `None` for a delete.
    pub(crate) value: Option<Vec<u8>>,
}

/// Every change one etcd revision made under the prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Revision {
    pub(crate) revision: i64,
    pub(crate) changes: Vec<KeyChange>,
}

/// Collects events until their revision is known to be complete.
#[derive(Debug, Default)]
pub(crate) struct Grouper {
    /// The revision being collected, and its changes so far (never empty
    /// while `open` is `Some`).
    open: Option<Revision>,
}

impl Grouper {
    /// Adds one event; if it starts a later revision, the one collected so far
    /// is complete and goes to `done`.
    pub(crate) fn event(&mut self, revision: i64, change: KeyChange, done: &mut Vec<Revision>) {
        match &mut self.open {
            Some(open) if open.revision == revision => open.changes.push(change),
            open => {
                if let Some(complete) = open.take() {
                    done.push(complete);
                }
                *open = Some(Revision {
                    revision,
                    changes: vec![change],
                });
            }
        }
    }

    /// Ends one response: unless it was a fragment (more of its revision
    /// follows), the revision collected so far is complete.
    pub(crate) fn end_of_response(&mut self, fragment: bool, done: &mut Vec<Revision>) {
        if !fragment {
            done.extend(self.open.take());
        }
    }

    /// Forgets a revision left incomplete by a broken stream: the resumed watch
    /// sends it again, whole.
    pub(crate) fn reset(&mut self) {
        self.open = None;
    }

    /// Whether a revision is being collected.
    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        self.open.is_some()
    }
}
