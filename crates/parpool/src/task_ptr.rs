//! `TaskPtr`: a counted reference to a task in slab memory.
//!
//! What `Arc` is to the global allocator, this is to [`slab`]:
//! a task and the references to it (the queue's and its handle's) share
//! one allocation, freed by whichever reference drops last. Unlike `Arc`,
//! the number of references is fixed when the task is made (one or two;
//! nothing clones them), so there is no weak count, and the count is the
//! first word of the task itself: every type behind a `TaskPtr` is
//! `#[repr(C)]` with a [`Refs`] first ([`Counted`]).
//!
//! **Invariant:** the allocation is freed exactly once, after every
//! reference has dropped: each drop decrements with `Release`, and the one
//! that takes the count to zero fences with `Acquire` (as `Arc` does), so
//! every other reference's last use happens before the value is dropped.

use crate::slab;
use std::alloc::Layout;
use std::marker::PhantomData;
use std::ptr::{self, NonNull};
use std::sync::atomic::{fence, AtomicUsize, Ordering};

/// The reference count at the start of a [`Counted`] value, and in the
/// same word a *key* of the value's own: a number whose low two bits are
/// clear (such as the address of something aligned to 4), set when the
/// value is made and only read after. The count (one or two) lives in
/// those two low bits; a reference's drop subtracts one from the word, so
/// the key is never touched. One word instead of two keeps a one-word
/// task in one cache line (W4, `docs/design.md` §12).
pub(crate) struct Refs(AtomicUsize);

/// The bits of a [`Refs`] word that hold the count.
const COUNT: usize = 0b11;

impl Refs {
    /// A count to be set by [`TaskPtr::new`] or [`TaskPtr::new_pair`],
    /// with no key (0).
    pub(crate) fn new() -> Self {
        Refs(AtomicUsize::new(0))
    }

    /// As [`new`](Self::new), with `key`, whose low two bits must be clear.
    pub(crate) fn with_key(key: usize) -> Self {
        debug_assert_eq!(
            key & COUNT,
            0,
            "parpool: a task key's low bits are its count's"
        );
        Refs(AtomicUsize::new(key))
    }

    /// The key given to [`with_key`](Self::with_key) (0 for [`new`](Self::new)).
    pub(crate) fn key(&self) -> usize {
        // The key bits never change after the value is shared (made before
        // it is published, and only the count bits are ever subtracted
        // from): any load sees them.
        self.0.load(Ordering::Relaxed) & !COUNT
    }
}

/// A type that starts with its [`Refs`].
///
/// # Safety
///
/// The type is `#[repr(C)]` and its first field is a `Refs`, so a pointer
/// to it is a pointer to its count.
// A marker, used only as a bound, which the dead-code lint does not count.
#[allow(dead_code)]
pub(crate) unsafe trait Counted {}

/// One of a fixed number of references to a `T` in slab memory; `T` may be
/// a trait object of a [`Counted`] type.
pub(crate) struct TaskPtr<T: ?Sized> {
    ptr: NonNull<T>,
    /// Owns a `T` (for the drop check), as `Arc` does.
    _owns: PhantomData<T>,
}

// SAFETY: as `Arc<T>`: the value is shared between the references' threads
// (`Sync`) and dropped on whichever drops last (`Send`).
unsafe impl<T: ?Sized + Send + Sync> Send for TaskPtr<T> {}
// SAFETY: as above; `&TaskPtr` only gives `&T`.
unsafe impl<T: ?Sized + Send + Sync> Sync for TaskPtr<T> {}

impl<T: Counted> TaskPtr<T> {
    /// Moves `value` into slab memory, with one reference.
    pub(crate) fn new(value: T) -> Self {
        TaskPtr {
            ptr: Self::place(value, 1),
            _owns: PhantomData,
        }
    }

    /// Moves `value` into slab memory, with two references.
    pub(crate) fn new_pair(value: T) -> (Self, Self) {
        let ptr = Self::place(value, 2);
        let one = || TaskPtr {
            ptr,
            _owns: PhantomData,
        };
        (one(), one())
    }

    fn place(value: T, refs: usize) -> NonNull<T> {
        let ptr = slab::alloc(Layout::new::<T>()).cast::<T>();
        // SAFETY: fresh memory for a `T` (size and alignment of its layout).
        unsafe { ptr.as_ptr().write(value) };
        debug_assert!((1..=COUNT).contains(&refs));
        // SAFETY: `T: Counted`: its `Refs` is at its start. Not yet shared.
        let word = &unsafe { ptr.cast::<Refs>().as_ref() }.0;
        word.store(
            word.load(Ordering::Relaxed) & !COUNT | refs,
            Ordering::Relaxed,
        );
        ptr
    }
}

impl<T: ?Sized> TaskPtr<T> {
    /// The same reference as another type: `cast` turns the pointer into a
    /// trait object of the same value (`|p| p as *mut dyn Trait`).
    ///
    /// # Safety
    ///
    /// `cast` returns its argument, unsized: same address, same value.
    pub(crate) unsafe fn coerce<U: ?Sized>(
        self,
        cast: impl FnOnce(*mut T) -> *mut U,
    ) -> TaskPtr<U> {
        let this = std::mem::ManuallyDrop::new(self);
        let raw = cast(this.ptr.as_ptr());
        debug_assert_eq!(raw as *mut u8, this.ptr.as_ptr() as *mut u8);
        TaskPtr {
            // SAFETY: the same non-null address (the caller's promise).
            ptr: unsafe { NonNull::new_unchecked(raw) },
            _owns: PhantomData,
        }
    }

    /// The value's address, for identity only.
    pub(crate) fn addr(&self) -> usize {
        self.ptr.as_ptr() as *const () as usize
    }
}

impl<T: ?Sized> std::ops::Deref for TaskPtr<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the value lives until the last reference drops, and this
        // one has not.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: ?Sized> Drop for TaskPtr<T> {
    fn drop(&mut self) {
        // SAFETY: every `TaskPtr` points at a `Counted` value (made by
        // `new`, kept by `coerce`), which starts with its `Refs`.
        let refs = unsafe { self.ptr.cast::<Refs>().as_ref() };
        if refs.0.fetch_sub(1, Ordering::Release) & COUNT != 1 {
            return;
        }
        fence(Ordering::Acquire);
        // SAFETY: the value is still alive (dropped just below).
        let layout = Layout::for_value(unsafe { self.ptr.as_ref() });
        /// Frees the memory even if the value's drop panics (user `Drop`s
        /// in it are contained, but a panic must not leak the slot's
        /// bookkeeping either way).
        struct Free(NonNull<u8>, Layout);
        impl Drop for Free {
            fn drop(&mut self) {
                // SAFETY: from `slab::alloc` with this layout, in `new`;
                // freed once, by the last reference.
                unsafe { slab::dealloc(self.0, self.1) };
            }
        }
        let _free = Free(self.ptr.cast::<u8>(), layout);
        // SAFETY: the last reference: nothing else reads the value, now or
        // later (the `Acquire` fence orders the other references' uses
        // before this).
        unsafe { ptr::drop_in_place(self.ptr.as_ptr()) };
    }
}
