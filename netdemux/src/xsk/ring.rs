//! The four AF_XDP rings: single-producer / single-consumer queues in memory shared with the
//! kernel, mapped from the socket.
//!
//! Each ring is a power-of-two array of descriptors plus a producer and a consumer index. We own
//! one side of every ring: we produce into the fill and TX rings and consume from the RX and
//! completion rings. Following the kernel's protocol (Documentation/networking/af_xdp.rst and
//! the memory-ordering comments in net/xdp/xsk_queue.h): the side that produces writes the
//! descriptors, then publishes the producer index with a release store; the side that consumes
//! reads the producer index with an acquire load before reading descriptors, and publishes its
//! consumer index with a release store after it is done with them. Both sides cache the other's
//! index and re-read it only when the cache says the ring looks full or empty, so a batch costs
//! two atomic operations, not two per descriptor.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
    ptr::NonNull,
    sync::atomic::{AtomicU32, Ordering},
};

/// Where the kernel says a ring's fields are, relative to the start of its mapping.
#[derive(Clone, Copy, Debug)]
pub struct RingOffsets {
    /// Offset of the producer index.
    pub producer: u64,
    /// Offset of the consumer index.
    pub consumer: u64,
    /// Offset of the descriptor array.
    pub desc: u64,
    /// Offset of the flags word (`XDP_RING_NEED_WAKEUP`).
    pub flags: u64,
}

/// A mapped ring of `T` descriptors (`u64` frame addresses for fill/completion, `xdp_desc` for
/// RX/TX). The mapping lives as long as this value.
pub struct RingMap<T> {
    base: NonNull<u8>,
    len: usize,
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    desc: NonNull<T>,
    size: u32,
}

// SAFETY: the mapping is owned by this value and only reached through it; moving it to the
// queue worker's thread is how it is meant to be used (one owner per ring side).
unsafe impl<T: Send> Send for RingMap<T> {}

impl<T> RingMap<T> {
    /// Maps the ring of `size` descriptors at page offset `pgoff` of the AF_XDP socket `fd`.
    pub fn map(
        fd: BorrowedFd<'_>,
        pgoff: u64,
        offsets: RingOffsets,
        size: u32,
    ) -> io::Result<Self> {
        debug_assert!(size.is_power_of_two());
        let len = offsets.desc as usize + size as usize * std::mem::size_of::<T>();
        // SAFETY: a fresh shared mapping of the socket's ring region; the kernel checks `pgoff`
        // and `len` against the ring it created for this socket and fails otherwise.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                pgoff as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or(io::ErrorKind::InvalidData)?;
        let at = |off: u64| {
            // SAFETY: the kernel's offsets lie within the `len` bytes just mapped.
            unsafe { base.add(off as usize) }
        };
        Ok(RingMap {
            base,
            len,
            producer: at(offsets.producer).cast(),
            consumer: at(offsets.consumer).cast(),
            flags: at(offsets.flags).cast(),
            desc: at(offsets.desc).cast(),
            size,
        })
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into our live mapping, at a 4-byte aligned u32 the kernel shares with
        // us; AtomicU32 has the layout of u32.
        unsafe { self.producer.as_ref() }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { self.consumer.as_ref() }
    }

    /// True when the kernel asks to be woken (`XDP_RING_NEED_WAKEUP`) to make progress.
    pub fn needs_wakeup(&self) -> bool {
        // SAFETY: as for `producer`; the flags word is written by the kernel only.
        let flags = unsafe { self.flags.as_ref() };
        flags.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    fn slot(&self, idx: u32) -> *mut T {
        // SAFETY: masking keeps the index below `size`, the number of descriptors mapped.
        unsafe { self.desc.as_ptr().add((idx & (self.size - 1)) as usize) }
    }
}

impl<T> Drop for RingMap<T> {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region `map` mapped; no reference into it outlives `self`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// Our producer side of a ring (fill, TX).
pub struct Producer<T> {
    ring: RingMap<T>,
    /// Our producer index (we are its only writer).
    prod: u32,
    /// The consumer index as last read, plus the ring size: `cached_cons - prod` is free room.
    cached_cons: u32,
}

impl<T: Copy> Producer<T> {
    /// Wraps a freshly mapped ring that we produce into.
    pub fn new(ring: RingMap<T>) -> Self {
        let prod = ring.producer().load(Ordering::Relaxed);
        let cached_cons = ring.consumer().load(Ordering::Acquire) + ring.size;
        Producer {
            ring,
            prod,
            cached_cons,
        }
    }

    /// Free slots, re-reading the consumer index when fewer than `want` look free.
    pub fn free(&mut self, want: u32) -> u32 {
        let free = self.cached_cons.wrapping_sub(self.prod);
        if free >= want {
            return free;
        }
        self.cached_cons = self
            .ring
            .consumer()
            .load(Ordering::Acquire)
            .wrapping_add(self.ring.size);
        self.cached_cons.wrapping_sub(self.prod)
    }

    /// Writes up to `items.len()` descriptors (as many as fit) and publishes them; returns how
    /// many were produced.
    pub fn produce(&mut self, items: &[T]) -> usize {
        let n = (self.free(items.len() as u32) as usize).min(items.len());
        for (i, item) in items[..n].iter().enumerate() {
            // SAFETY: slots prod..prod+n are free (checked above), so the kernel does not read
            // them until we publish; `slot` keeps the pointer inside the mapping.
            unsafe {
                self.ring
                    .slot(self.prod.wrapping_add(i as u32))
                    .write(*item)
            };
        }
        self.prod = self.prod.wrapping_add(n as u32);
        // Release: the descriptors above are visible before the new producer index.
        self.ring.producer().store(self.prod, Ordering::Release);
        n
    }

    /// True when the kernel asks for a wakeup to consume this ring.
    pub fn needs_wakeup(&self) -> bool {
        self.ring.needs_wakeup()
    }

    /// Slots in the ring.
    pub fn capacity(&self) -> u32 {
        self.ring.size
    }

    /// Descriptors produced but not yet consumed by the kernel.
    pub fn pending(&self) -> u32 {
        self.prod
            .wrapping_sub(self.ring.consumer().load(Ordering::Acquire))
    }
}

/// Our consumer side of a ring (RX, completion).
pub struct Consumer<T> {
    ring: RingMap<T>,
    /// Our consumer index (we are its only writer).
    cons: u32,
    /// The producer index as last read.
    cached_prod: u32,
}

impl<T: Copy> Consumer<T> {
    /// Wraps a freshly mapped ring that we consume from.
    pub fn new(ring: RingMap<T>) -> Self {
        let cons = ring.consumer().load(Ordering::Relaxed);
        let cached_prod = ring.producer().load(Ordering::Acquire);
        Consumer {
            ring,
            cons,
            cached_prod,
        }
    }

    /// Copies up to `out.len()` available descriptors into `out` and releases their slots;
    /// returns how many. The producer index is re-read only when the cache holds fewer
    /// ([`Consumer::available`]).
    pub fn consume(&mut self, out: &mut [T]) -> usize {
        let avail = self.available(out.len() as u32);
        let n = (avail as usize).min(out.len());
        for (i, o) in out[..n].iter_mut().enumerate() {
            // SAFETY: slots cons..cons+n were published by the kernel (acquire above) and are
            // not reused until we release them below; `slot` keeps the pointer in the mapping.
            *o = unsafe { self.ring.slot(self.cons.wrapping_add(i as u32)).read() };
        }
        self.cons = self.cons.wrapping_add(n as u32);
        // Release: we are done reading those slots before the kernel may overwrite them.
        self.ring.consumer().store(self.cons, Ordering::Release);
        n
    }

    /// Entries the kernel has published and we have not consumed yet, reading the producer
    /// index only when the cached one shows fewer than `want` (so a `consume` of at most what
    /// this returned reads it no second time).
    pub fn available(&mut self, want: u32) -> u32 {
        let avail = self.cached_prod.wrapping_sub(self.cons);
        if avail >= want {
            return avail;
        }
        // Acquire: descriptors written before the kernel's producer store are visible.
        self.cached_prod = self.ring.producer().load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cons)
    }

    /// True when the kernel asks for a wakeup.
    pub fn needs_wakeup(&self) -> bool {
        self.ring.needs_wakeup()
    }
}
