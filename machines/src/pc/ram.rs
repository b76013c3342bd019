//! Guest RAM: one zeroed, page-aligned host allocation (page alignment lets a hardware
//! accelerator map it directly, e.g. KVM memory slots).

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ops::{Deref, DerefMut};

pub struct GuestRam {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: GuestRam owns its allocation exclusively, like a Vec<u8>.
unsafe impl Send for GuestRam {}
unsafe impl Sync for GuestRam {}

impl GuestRam {
    pub const ALIGN: usize = 4096;

    pub fn new(len: usize) -> Self {
        assert!(len > 0 && len % Self::ALIGN == 0);
        let layout = Layout::from_size_align(len, Self::ALIGN).unwrap();
        // SAFETY: non-zero size; checked for null below.
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "cannot allocate {len} bytes of guest RAM");
        GuestRam { ptr, len }
    }
}

impl Deref for GuestRam {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr/len describe our live allocation.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl DerefMut for GuestRam {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self guarantees exclusivity.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for GuestRam {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, Layout::from_size_align(self.len, Self::ALIGN).unwrap()) }
    }
}
