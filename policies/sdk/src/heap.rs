//! The allocator of policies built with the SDK: a bump arena for the one
//! evaluation an instance lives for, in front of the system allocator.
//!
//! The server gives every evaluation a fresh instance and discards it
//! afterwards, so memory a policy frees need not be made reusable: the
//! general-purpose allocator's bookkeeping (wasi-libc's dlmalloc: bins,
//! headers, coalescing on every free) is work for nothing. [`OneShotHeap`]
//! hands out memory by moving a pointer, gives back only the most recent
//! block (so a growing `String` or `Vec` that was allocated last grows in
//! place), and forgets every other free.
//!
//! It is bounded, so a policy that allocates and frees in a loop cannot run
//! out of memory because of it: the arena is [`ARENA_BYTES`], taken from the
//! system allocator at the first allocation. Blocks larger than
//! [`LARGE_BYTES`], and every block once the arena is full, come from the
//! system allocator and are freed to it — at most the arena's size is ever
//! held back. The arena fits the initial memory the built-ins are linked
//! with, so it does not make them grow their memory (tested with the
//! recorded reviews and a 25 KB StatefulSet).
//!
//! Installed as the global allocator on Wasm by the `one-shot-heap` feature
//! (on by default); a policy with an allocator of its own turns the feature
//! off.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Bytes of the arena.
pub const ARENA_BYTES: usize = 128 << 10;

/// Blocks larger than this go to the system allocator directly, so one large
/// buffer does not use up the arena for the many small ones.
pub const LARGE_BYTES: usize = ARENA_BYTES / 4;

/// A bump allocator in front of [`System`]; see the module documentation.
pub struct OneShotHeap {
    /// The arena, as the system allocator returned it: every block of the
    /// arena is derived from this pointer.
    arena: Cell<*mut u8>,
    /// The arena's first byte, or 0 before the first allocation (1 if the
    /// system allocator refused the arena, so it is not asked again).
    start: Cell<usize>,
    /// One past the arena's last byte; equal to `start` if the system
    /// allocator refused the arena, which leaves it empty.
    end: Cell<usize>,
    /// Where the next block may start.
    next: Cell<usize>,
    /// The most recent block still at the top of the arena (0 if none): the
    /// only one a free gives back or a reallocation grows in place.
    last: Cell<usize>,
}

// SAFETY: without Wasm threads a Wasm instance runs one thread, so the cells
// are never accessed concurrently.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
unsafe impl Sync for OneShotHeap {}

impl OneShotHeap {
    /// An allocator whose arena is taken at the first allocation.
    pub const fn new() -> Self {
        Self {
            arena: Cell::new(std::ptr::null_mut()),
            start: Cell::new(0),
            end: Cell::new(0),
            next: Cell::new(0),
            last: Cell::new(0),
        }
    }

    /// How many bytes the arena has handed out (and not given back), for
    /// tests.
    pub fn arena_used(&self) -> usize {
        self.next.get() - self.start.get()
    }

    /// Whether `ptr` points into the arena.
    fn owns(&self, ptr: *mut u8) -> bool {
        (self.start.get()..self.end.get()).contains(&ptr.addr())
    }

    /// A block from the arena, or `None` if it does not fit (or there is no
    /// arena).
    fn bump(&self, layout: Layout) -> Option<*mut u8> {
        if self.start.get() == 0 {
            self.take_arena();
        }
        let next = self.next.get();
        let aligned = next.checked_next_multiple_of(layout.align())?;
        let after = aligned.checked_add(layout.size())?;
        if after > self.end.get() {
            return None;
        }
        self.next.set(after);
        self.last.set(aligned);
        Some(self.arena.get().with_addr(aligned))
    }

    fn take_arena(&self) {
        let layout = Layout::from_size_align(ARENA_BYTES, 16).expect("a valid layout");
        // SAFETY: the layout has a non-zero size.
        let arena = unsafe { System.alloc(layout) };
        // A refused arena leaves start == end: nothing is ever bumped, and
        // every block comes from the system allocator. `start` must not stay
        // 0, or each allocation would ask again.
        let start = if arena.is_null() { 1 } else { arena.addr() };
        let end = if arena.is_null() { 1 } else { start + ARENA_BYTES };
        self.start.set(start);
        self.next.set(start);
        self.end.set(end);
        self.arena.set(arena);
    }
}

impl Default for OneShotHeap {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: blocks from the arena are disjoint ranges inside one live System
// allocation, aligned as asked; everything else is System's own.
unsafe impl GlobalAlloc for OneShotHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() <= LARGE_BYTES
            && let Some(block) = self.bump(layout)
        {
            return block;
        }
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.owns(ptr) {
            if ptr.addr() == self.last.get() {
                self.next.set(ptr.addr());
                self.last.set(0);
            }
            return;
        }
        // SAFETY: not the arena's, so System's, with the caller's layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !self.owns(ptr) {
            // SAFETY: System's block, with the caller's layout and size.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        if ptr.addr() == self.last.get()
            && new_size <= LARGE_BYTES
            && let Some(after) = ptr.addr().checked_add(new_size)
            && after <= self.end.get()
        {
            self.next.set(after);
            return ptr;
        }
        if new_size <= layout.size() {
            return ptr;
        }
        // SAFETY: the caller guarantees `new_size`, rounded up to the
        // alignment, does not overflow.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a non-zero size (larger than the old one).
        let moved = unsafe { self.alloc(new_layout) };
        if !moved.is_null() {
            // SAFETY: both blocks are at least `layout.size()` long, and
            // distinct: the new one lies past the old one or is System's.
            unsafe { std::ptr::copy_nonoverlapping(ptr, moved, layout.size()) };
            if self.last.get() == ptr.addr() {
                // Still the arena's last block (the copy is the system's):
                // give it back.
                self.next.set(ptr.addr());
                self.last.set(0);
            }
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn blocks_are_aligned_disjoint_and_bumped() {
        let heap = OneShotHeap::new();
        unsafe {
            let a = heap.alloc(layout(3, 1));
            let b = heap.alloc(layout(8, 8));
            assert!(heap.owns(a) && heap.owns(b));
            assert_eq!(b.addr() % 8, 0);
            assert!(b.addr() >= a.addr() + 3, "b does not overlap a");
            a.write_bytes(0xaa, 3);
            b.write_bytes(0xbb, 8);
            assert_eq!(*a.add(2), 0xaa, "writing b left a alone");
            assert_eq!(heap.arena_used(), b.addr() + 8 - heap.start.get());
        }
    }

    #[test]
    fn only_the_most_recent_block_is_given_back() {
        let heap = OneShotHeap::new();
        unsafe {
            let a = heap.alloc(layout(100, 1));
            let b = heap.alloc(layout(100, 1));
            let used = heap.arena_used();
            heap.dealloc(a, layout(100, 1));
            assert_eq!(heap.arena_used(), used, "an older block is forgotten, not reused");
            heap.dealloc(b, layout(100, 1));
            assert_eq!(heap.arena_used(), used - 100, "the last block is given back");
            let c = heap.alloc(layout(50, 1));
            assert_eq!(c, b, "and its room is used again");
        }
    }

    #[test]
    fn the_most_recent_block_grows_in_place_others_move_with_their_bytes() {
        let heap = OneShotHeap::new();
        unsafe {
            let a = heap.alloc(layout(4, 1));
            a.copy_from_nonoverlapping(b"abcd".as_ptr(), 4);
            let grown = heap.realloc(a, layout(4, 1), 4000);
            assert_eq!(grown, a, "the last block grows in place");
            let b = heap.alloc(layout(4, 1));
            let moved = heap.realloc(grown, layout(4000, 1), 8000);
            assert_ne!(moved, grown, "a block that is not the last one moves");
            assert!(moved.addr() > b.addr());
            assert_eq!(std::slice::from_raw_parts(moved, 4), b"abcd");
            let shrunk = heap.realloc(b, layout(4, 1), 2);
            assert_eq!(shrunk, b, "shrinking never moves");
        }
    }

    #[test]
    fn large_blocks_and_blocks_past_a_full_arena_come_from_the_system() {
        let heap = OneShotHeap::new();
        unsafe {
            let large = heap.alloc(layout(LARGE_BYTES + 1, 8));
            assert!(!large.is_null() && !heap.owns(large));
            heap.dealloc(large, layout(LARGE_BYTES + 1, 8));

            let mut blocks = Vec::new();
            while heap.arena_used() + LARGE_BYTES <= ARENA_BYTES {
                blocks.push(heap.alloc(layout(LARGE_BYTES, 1)));
            }
            assert!(blocks.iter().all(|&block| heap.owns(block)));
            let overflow = heap.alloc(layout(LARGE_BYTES, 1));
            assert!(
                !overflow.is_null() && !heap.owns(overflow),
                "a full arena defers to the system"
            );
            overflow.write_bytes(1, LARGE_BYTES);
            heap.dealloc(overflow, layout(LARGE_BYTES, 1));

            let grown = heap.realloc(blocks[0], layout(LARGE_BYTES, 1), 2 * LARGE_BYTES);
            assert!(
                !heap.owns(grown),
                "an arena block grown past the limit moves to the system"
            );
            heap.dealloc(grown, layout(2 * LARGE_BYTES, 1));
        }
    }

    #[test]
    fn a_loop_that_allocates_and_frees_holds_back_at_most_the_arena() {
        let heap = OneShotHeap::new();
        unsafe {
            // Each pair of blocks leaves the first one behind in the arena;
            // once it is nearly full, the second block is the system's (and
            // freed to it), and the first, the arena's last, is given back.
            let block = layout(1000, 8);
            let mut from_the_system = 0;
            for _ in 0..10_000 {
                let first = heap.alloc(block);
                let second = heap.alloc(block);
                assert!(!first.is_null() && !second.is_null());
                from_the_system += usize::from(!heap.owns(first) || !heap.owns(second));
                heap.dealloc(first, block);
                heap.dealloc(second, block);
                assert!(heap.arena_used() <= ARENA_BYTES);
            }
            assert!(heap.arena_used() > ARENA_BYTES - 2000, "the arena filled up");
            assert!(from_the_system > 9_000, "then the system allocator served the loop");
        }
    }
}
