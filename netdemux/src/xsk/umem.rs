//! The UMEM: one anonymous mapping of fixed-size frames that the kernel copies received packets
//! into (or, in zero-copy mode, DMAs them into) and reads transmitted packets from.

use std::{io, ptr::NonNull};

/// A page-aligned area of `frames` frames of `frame_size` bytes.
pub struct Umem {
    area: NonNull<u8>,
    len: usize,
    frame_size: u32,
    frames: u32,
}

// SAFETY: the mapping is owned by this value; it moves to the queue worker that owns the socket.
unsafe impl Send for Umem {}

impl Umem {
    /// Maps `frames * frame_size` bytes, populated up front so the data path never faults.
    pub fn new(frames: u32, frame_size: u32) -> io::Result<Self> {
        let len = frames as usize * frame_size as usize;
        // SAFETY: a fresh private anonymous mapping, owned by the returned value.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let area = NonNull::new(ptr.cast::<u8>()).ok_or(io::ErrorKind::InvalidData)?;
        Ok(Umem {
            area,
            len,
            frame_size,
            frames,
        })
    }

    /// Start address of the area, for `XDP_UMEM_REG`.
    pub fn addr(&self) -> u64 {
        self.area.as_ptr() as u64
    }

    /// Length of the area in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an area of no frames (never built so).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Size of one frame.
    pub fn frame_size(&self) -> u32 {
        self.frame_size
    }

    /// Number of frames.
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// The UMEM address of frame `i`.
    pub fn frame_addr(&self, i: u32) -> u64 {
        i as u64 * self.frame_size as u64
    }

    /// The start of the frame that contains UMEM address `addr`.
    pub fn frame_base(&self, addr: u64) -> u64 {
        addr & !(self.frame_size as u64 - 1)
    }

    /// The `len` bytes at UMEM address `addr`, or `None` if they leave the area (a descriptor
    /// the kernel would never produce; checked rather than trusted).
    pub fn bytes(&self, addr: u64, len: u32) -> Option<&[u8]> {
        let end = addr.checked_add(len as u64)?;
        if end > self.len as u64 {
            return None;
        }
        // SAFETY: addr..end lies inside the mapping (checked above). The kernel wrote this frame
        // before publishing its descriptor and does not touch it again until we hand the frame
        // back through the fill ring, which needs `&mut` access to the socket.
        Some(unsafe {
            std::slice::from_raw_parts(self.area.as_ptr().add(addr as usize), len as usize)
        })
    }
}

impl Umem {
    /// The `len` bytes at `addr` for a descriptor of one frame: `None` unless they lie within
    /// the frame that holds `addr` (an RX descriptor that strays into the next frame would
    /// lend bytes of a frame the kernel may be writing).
    pub fn frame_mut(&mut self, addr: u64, len: u32) -> Option<&mut [u8]> {
        let frame_end = self.frame_base(addr).checked_add(self.frame_size as u64)?;
        if addr.checked_add(len as u64)? > frame_end {
            return None;
        }
        self.bytes_mut(addr, len)
    }

    /// Asks the CPU to start loading the cache line at `addr` (nothing for an address outside
    /// the area, or on a CPU without a prefetch instruction we use). A received frame was written
    /// by the kernel on the core that ran the receive path: its first read here misses, and a
    /// worker that reads a batch's frames one after the other waits for each miss in turn
    /// unless the batch's lines are on their way before the first frame is looked at.
    #[inline]
    pub fn prefetch(&self, addr: u64) {
        if addr >= self.len as u64 {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `addr` lies inside the mapping (checked above), so the pointer stays within
        // the area; a prefetch reads nothing into the program and cannot fault.
        unsafe {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            _mm_prefetch::<_MM_HINT_T0>(self.area.as_ptr().add(addr as usize).cast::<i8>());
        }
    }

    /// True when `addr` lies in the area (its frame is one of ours).
    pub fn contains(&self, addr: u64) -> bool {
        addr < self.len as u64
    }

    /// Like [`Umem::bytes`], writable: for frames we hold (received and not yet given back),
    /// which the kernel does not touch until we hand them over again.
    pub fn bytes_mut(&mut self, addr: u64, len: u32) -> Option<&mut [u8]> {
        let end = addr.checked_add(len as u64)?;
        if end > self.len as u64 {
            return None;
        }
        // SAFETY: addr..end lies inside the mapping (checked above); `&mut self` makes this the
        // only reference into the area, and the frame is ours until we post it to a ring.
        Some(unsafe {
            std::slice::from_raw_parts_mut(self.area.as_ptr().add(addr as usize), len as usize)
        })
    }
}

impl Drop for Umem {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the area `new` mapped; the socket that registered it is closed
        // first (field order in XskSocket), so the kernel no longer uses it.
        unsafe { libc::munmap(self.area.as_ptr().cast(), self.len) };
    }
}
