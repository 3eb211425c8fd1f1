//! Value cells kept for reuse: the memory of values a ledger shard freed, handed
//! to the next value its threads store.
//!
//! An overwrite allocates a cell for the new value and retires the old one, so a
//! map under steady overwrites allocates and frees one cell per write: about 230
//! of an overwrite's 700 instructions go to the allocator. The frees come in
//! bursts (a scheme's collection runs hundreds of value batches at once), which
//! overflow any per-thread allocator cache, so both halves take the
//! allocator's slow path. A shard keeps the memory of the cells it frees instead
//! (up to [`CELLS`] cells and [`BYTES`] bytes, plus one set aside), and a
//! writer takes its next cell from its home shard, without a lock: each
//! retirement into the shard sets one spare aside for it.
//!
//! Reusing a cell's memory is as safe as the allocator reusing it: a cell joins
//! the spares only when the ledger frees it, after its grace period (no reader
//! can reach it) and after its value was dropped.

use core::alloc::Layout;
use core::ptr::NonNull;
use std::alloc::dealloc;

/// The most cells a shard keeps: one garbage bag's worth of a thread's values
/// (crossbeam-epoch queues a thread's records 64 to a bag, and runs whole bags
/// when it collects; each record is a batch of 16 values). Measured with
/// callgrind, a pool that keeps a quarter of that costs more than it saves:
/// most of each burst passes through it on the way to the allocator anyway.
const CELLS: usize = 1024;

/// The most cell memory a shard keeps, in bytes. Cells so large that a batch
/// of them would not fit (over 4 KiB) are not kept at all: a pool smaller
/// than a batch would pass most of each batch through to the allocator, and
/// building such a value costs far more than its allocation.
const BYTES: usize = 64 * 1024;

/// Whether freed cells are kept at all. Memory checkers (Miri, and
/// AddressSanitizer in CI, built with `--cfg readmostly_fresh_cells`) should see
/// every cell freed to the allocator, so that a use after free is one they can
/// catch; loom models see every free as it happens.
const REUSE: bool = !cfg!(any(miri, loom, readmostly_fresh_cells));

/// Freed cells of one layout, kept for reuse (inside a shard's lock).
pub(super) struct Spares {
    /// The layout of every cell kept; `None` for a ledger whose retired values
    /// are not plain cells, which keeps nothing.
    layout: Option<Layout>,
    /// How many cells may be kept.
    cap: usize,
    cells: Vec<NonNull<u8>>,
}

// SAFETY: a spare is unowned memory (its value was dropped); nothing about it is
// tied to a thread.
unsafe impl Send for Spares {}

impl Spares {
    /// Spares for cells of `layout`, or none at all (also in builds for
    /// memory checkers, unless `always`: for tests of the spares themselves).
    pub(super) fn new(layout: Option<Layout>, batch: usize, always: bool) -> Self {
        let cap = layout.map_or(0, |layout| (BYTES / layout.size()).min(CELLS));
        let layout = layout.filter(|_| (REUSE || always) && cap >= batch);
        Spares {
            layout,
            cap,
            cells: Vec::new(),
        }
    }

    /// The layout of the cells kept, if any are.
    pub(super) fn layout(&self) -> Option<Layout> {
        self.layout
    }

    pub(super) fn len(&self) -> usize {
        self.cells.len()
    }

    /// Takes a kept cell, if there is one.
    pub(super) fn pop(&mut self) -> Option<NonNull<u8>> {
        self.cells.pop()
    }

    /// Keeps `cell` if there is room; otherwise it is the caller's to free
    /// (outside the shard's lock).
    #[must_use = "a cell not kept must be freed"]
    pub(super) fn keep(&mut self, cell: NonNull<u8>) -> bool {
        if self.cells.len() == self.cap {
            return false;
        }
        if self.cells.capacity() == 0 {
            // One allocation for good, not a doubling series.
            self.cells.reserve_exact(self.cap);
        }
        self.cells.push(cell);
        true
    }

    /// Takes every kept cell out, to be freed; the list's own memory goes too.
    pub(super) fn take_all(&mut self) -> Vec<NonNull<u8>> {
        core::mem::take(&mut self.cells)
    }

    /// Frees `cells`, which this shard's spares held or were offered.
    ///
    /// # Safety
    ///
    /// Each came from the global allocator with [`layout`](Self::layout) (a cell
    /// of the ledger's cell type, its value dropped) and is not used again.
    pub(super) unsafe fn free(layout: Layout, cells: impl IntoIterator<Item = NonNull<u8>>) {
        for cell in cells {
            // SAFETY: the caller's contract.
            unsafe { dealloc(cell.as_ptr(), layout) };
        }
    }
}

impl Default for Spares {
    fn default() -> Self {
        Spares::new(None, 0, false)
    }
}

impl Drop for Spares {
    fn drop(&mut self) {
        if let Some(layout) = self.layout {
            // SAFETY: every kept cell has the spares' layout and is unused.
            unsafe { Spares::free(layout, self.take_all()) };
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_pool_is_capped_in_cells_and_bytes_and_large_cells_are_not_kept() {
        let cap = |size: usize| {
            let layout = Layout::from_size_align(size, 8).unwrap();
            let spares = Spares::new(Some(layout), 16, true);
            spares.layout().map(|_| spares.cap)
        };
        assert_eq!(cap(8), Some(CELLS));
        assert_eq!(cap(256), Some(BYTES / 256));
        assert_eq!(cap(4096), Some(16), "a batch's worth still fits");
        assert_eq!(cap(4104), None, "a batch would not fit: nothing kept");
        assert_eq!(Spares::new(None, 16, true).layout(), None);
    }
}
