//! One AF_XDP socket bound to one RX queue, with its own UMEM and rings.
//!
//! The safe surface is [`XskSocket::receive`]: it takes a batch of RX descriptors and lends each
//! frame, writable, to a closure that either gives it back (it returns to the fill ring) or, after
//! rewriting it in place, transmits it (it goes to the TX ring, and comes back through the
//! completion ring). A frame is never reachable while the kernel may use it, and nothing is
//! allocated per packet: idle frames wait in a preallocated stack.

use std::{
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    time::Duration,
};

use super::{
    ring::{Consumer, Producer, RingMap, RingOffsets},
    umem::Umem,
};

/// Most RX descriptors handled per batch.
pub const BATCH: usize = 64;

/// Zero-copy policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZeroCopy {
    /// Let the kernel choose: zero-copy where the driver offers it, copy mode otherwise.
    Auto,
    /// Zero-copy or fail.
    Require,
}

/// How a socket is built.
#[derive(Clone, Copy, Debug)]
pub struct XskConfig {
    /// Frames in the UMEM (a power of two; all of them circulate through the fill ring, at
    /// most [`XskConfig::fill_depth`] of them queued there at once).
    pub frames: u32,
    /// Bytes per frame: 2048 or 4096.
    pub frame_size: u32,
    /// Descriptors in the RX, TX and completion rings (a power of two).
    pub ring_size: u32,
    /// Zero-copy policy.
    pub zero_copy: ZeroCopy,
    /// Set SO_PREFER_BUSY_POLL / SO_BUSY_POLL / SO_BUSY_POLL_BUDGET on the socket.
    pub busy_poll: bool,
    /// Most frames kept in the fill ring; 0: every idle frame but the TX reserve. See
    /// [`XskConfig::spinning`].
    pub fill_depth: u32,
}

/// Bytes the kernel keeps in front of every received packet in a UMEM frame
/// (`XDP_PACKET_HEADROOM`; the socket registers no headroom of its own).
pub const KERNEL_HEADROOM: u32 = 256;

impl XskConfig {
    /// The largest frame the socket can receive: a UMEM frame less the kernel's headroom. The
    /// kernel drops a longer one (counted in `rx_dropped`).
    pub fn rx_room(&self) -> u32 {
        self.frame_size.saturating_sub(KERNEL_HEADROOM)
    }

    /// This configuration for a consumer that spins: half a ring of frames in the fill ring.
    /// A spinning consumer gives frames back within microseconds, so the kernel needs few
    /// queued, and it then copies each packet into a frame used recently rather than cycling
    /// through every frame of the UMEM (a page each): measured on veth, a spinning sink received
    /// ~20% more with 1024 frames queued than with 3584 (with 512, no more than with 3584). A
    /// consumer that sleeps keeps them all queued, to ride out its wake-ups.
    pub fn spinning(self) -> XskConfig {
        XskConfig {
            fill_depth: self.ring_size / 2,
            ..self
        }
    }
}

impl Default for XskConfig {
    fn default() -> Self {
        XskConfig {
            frames: 4096,
            frame_size: 4096,
            ring_size: 2048,
            zero_copy: ZeroCopy::Auto,
            busy_poll: false,
            fill_depth: 0,
        }
    }
}

/// What a closure passed to [`XskSocket::receive`] does with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Give the frame back to the kernel for reception.
    Recycle,
    /// Transmit the frame (rewritten in place) with this length.
    Transmit(u32),
}

/// What one [`XskSocket::receive`] call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// Frames received.
    pub rx: usize,
    /// Frames posted for transmission.
    pub tx: usize,
    /// Frames that were to be transmitted but found the TX ring full.
    pub tx_dropped: usize,
    /// RX descriptors whose bytes did not lie within one frame of the UMEM (never from a
    /// correct kernel): skipped, their frame recycled when it is one of ours.
    pub bad_descs: usize,
    /// Answers longer than the frame received ([`Verdict::Transmit`] beyond its length would
    /// send bytes of an older packet): refused, the frame recycled.
    pub bad_lengths: usize,
}

/// What [`lend`] did with one batch of RX descriptors.
#[derive(Debug, Default, PartialEq, Eq)]
struct Lent {
    /// Descriptors to post to the TX ring (in `out[..tx]`).
    tx: usize,
    bad_descs: usize,
    bad_lengths: usize,
}

/// Checks each RX descriptor of `descs`, lends its frame to `f`, and sorts the frames: those
/// to transmit into `out`, the others back to `free`.
fn lend(
    umem: &mut Umem,
    descs: &[libc::xdp_desc],
    f: &mut impl FnMut(&mut [u8]) -> Verdict,
    out: &mut [libc::xdp_desc; BATCH],
    free: &mut Vec<u64>,
) -> Lent {
    let mut lent = Lent::default();
    // Every frame's first line (its headers) on its way before the first is read.
    for d in descs {
        umem.prefetch(d.addr);
    }
    for d in descs {
        let base = umem.frame_base(d.addr);
        let Some(frame) = umem.frame_mut(d.addr, d.len) else {
            lent.bad_descs += 1;
            if umem.contains(d.addr) {
                free.push(base);
            }
            continue;
        };
        match f(frame) {
            Verdict::Transmit(len) if len > 0 && len <= d.len => {
                out[lent.tx] = libc::xdp_desc {
                    addr: d.addr,
                    len,
                    options: 0,
                };
                lent.tx += 1;
            }
            Verdict::Transmit(len) if len > d.len => {
                lent.bad_lengths += 1;
                free.push(base);
            }
            _ => free.push(base),
        }
    }
    lent
}

/// Kernel counters of one socket (`XDP_STATISTICS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XskStats {
    /// Frames dropped for any reason (RX ring full, no fill buffer, ...).
    pub rx_dropped: u64,
    /// Invalid descriptors in the fill ring.
    pub rx_invalid_descs: u64,
    /// Invalid descriptors in the TX ring.
    pub tx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a frame arrived.
    pub rx_fill_ring_empty: u64,
    /// Times the TX ring was empty when the driver looked.
    pub tx_ring_empty: u64,
}

/// An AF_XDP socket with its UMEM and rings. Field order matters: the socket closes before the
/// rings and the UMEM are unmapped.
pub struct XskSocket {
    fd: OwnedFd,
    rx: Consumer<libc::xdp_desc>,
    fill: Producer<u64>,
    tx: Producer<libc::xdp_desc>,
    comp: Consumer<u64>,
    umem: Umem,
    /// Frames we hold that are in no ring: they top up the fill ring, except `tx_reserve`.
    free: Vec<u64>,
    /// Idle frames kept back from the fill ring for transmitting new datagrams.
    tx_reserve: usize,
    /// Most frames in the fill ring ([`XskConfig::fill_depth`]; `usize::MAX` for no bound).
    fill_depth: usize,
    queue: u32,
    zero_copy: bool,
    busy_poll: bool,
    /// Frames put on the TX ring since the socket was opened (answers and built frames).
    posted: u64,
}

fn setsockopt<T>(fd: BorrowedFd<'_>, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live T of the size passed; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Waits on `pfds` for up to `timeout`; true when any is ready, false on timeout or
/// interruption. ppoll(2), which takes the whole timeout: poll's milliseconds would turn a
/// timer due in 0.6 ms into a busy spin of zero-timeout calls until it is due.
fn poll(pfds: &mut [libc::pollfd], timeout: Duration) -> io::Result<bool> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `pfds` is a valid array of pollfds of the length passed; `ts` lives across the
    // call; no signal mask is passed.
    let rc = unsafe {
        libc::ppoll(
            pfds.as_mut_ptr(),
            pfds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
    match rc {
        -1 => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
        0 => Ok(false),
        _ => Ok(true),
    }
}

fn getsockopt<T: Default>(fd: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<T> {
    let mut value = T::default();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a live, writable T and `len` its size; the kernel writes at most `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut value as *mut T).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `xdp_mmap_offsets` with a Default, for [`getsockopt`].
#[repr(C)]
#[derive(Default)]
struct MmapOffsets {
    rings: [[u64; 4]; 4], // rx, tx, fill, completion: producer, consumer, desc, flags
}

/// `xdp_statistics` with a Default.
#[repr(C)]
#[derive(Default)]
struct RawStats([u64; 6]);

fn offsets(o: [u64; 4]) -> RingOffsets {
    RingOffsets {
        producer: o[0],
        consumer: o[1],
        desc: o[2],
        flags: o[3],
    }
}

/// Why a socket could not be set up, with the step that failed.
#[derive(Debug)]
pub struct XskError {
    /// What was being done.
    pub step: &'static str,
    /// The OS error.
    pub error: io::Error,
}

impl std::fmt::Display for XskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.step, self.error)
    }
}

impl std::error::Error for XskError {}

/// Asks the kernel to busy-poll the device queue for `fd` (SO_PREFER_BUSY_POLL, SO_BUSY_POLL
/// 20 µs, SO_BUSY_POLL_BUDGET one batch): what an AF_XDP socket gets with `busy_poll`, and what
/// the benchmarks give a kernel UDP socket to compare like with like.
pub fn set_busy_poll(fd: BorrowedFd<'_>) -> Result<(), XskError> {
    let one: libc::c_int = 1;
    let usecs: libc::c_int = 20;
    let budget: libc::c_int = BATCH as libc::c_int;
    step(
        "SO_PREFER_BUSY_POLL",
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_PREFER_BUSY_POLL, &one),
    )?;
    step(
        "SO_BUSY_POLL",
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_BUSY_POLL, &usecs),
    )?;
    step(
        "SO_BUSY_POLL_BUDGET",
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_BUSY_POLL_BUDGET, &budget),
    )
}

fn step<T>(step: &'static str, r: io::Result<T>) -> Result<T, XskError> {
    r.map_err(|error| XskError { step, error })
}

impl XskSocket {
    /// Creates a socket on RX queue `queue` of interface `ifindex`, registers its UMEM, maps
    /// its rings, binds it, and hands every frame to the kernel through the fill ring.
    pub fn open(ifindex: u32, queue: u32, cfg: &XskConfig) -> Result<Self, XskError> {
        for (what, n) in [("frames", cfg.frames), ("ring size", cfg.ring_size)] {
            if !n.is_power_of_two() {
                return Err(XskError {
                    step: what,
                    error: io::Error::new(io::ErrorKind::InvalidInput, "must be a power of two"),
                });
            }
        }
        // SAFETY: plain socket(2); the result is checked and owned immediately.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(XskError {
                step: "socket(AF_XDP)",
                error: io::Error::last_os_error(),
            });
        }
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let umem = step("mmap UMEM", Umem::new(cfg.frames, cfg.frame_size))?;
        let reg = libc::xdp_umem_reg {
            addr: umem.addr(),
            len: umem.len() as u64,
            chunk_size: cfg.frame_size,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        let b = fd.as_fd();
        step(
            "XDP_UMEM_REG",
            setsockopt(b, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg),
        )?;
        step(
            "XDP_UMEM_FILL_RING",
            setsockopt(b, libc::SOL_XDP, libc::XDP_UMEM_FILL_RING, &cfg.frames),
        )?;
        step(
            "XDP_UMEM_COMPLETION_RING",
            setsockopt(
                b,
                libc::SOL_XDP,
                libc::XDP_UMEM_COMPLETION_RING,
                &cfg.ring_size,
            ),
        )?;
        step(
            "XDP_RX_RING",
            setsockopt(b, libc::SOL_XDP, libc::XDP_RX_RING, &cfg.ring_size),
        )?;
        step(
            "XDP_TX_RING",
            setsockopt(b, libc::SOL_XDP, libc::XDP_TX_RING, &cfg.ring_size),
        )?;
        let off: MmapOffsets = step(
            "XDP_MMAP_OFFSETS",
            getsockopt(b, libc::SOL_XDP, libc::XDP_MMAP_OFFSETS),
        )?;
        let [rx_off, tx_off, fill_off, comp_off] = off.rings;
        let rx = step(
            "mmap RX ring",
            RingMap::map(
                b,
                libc::XDP_PGOFF_RX_RING as u64,
                offsets(rx_off),
                cfg.ring_size,
            ),
        )?;
        let tx = step(
            "mmap TX ring",
            RingMap::map(
                b,
                libc::XDP_PGOFF_TX_RING as u64,
                offsets(tx_off),
                cfg.ring_size,
            ),
        )?;
        let fill = step(
            "mmap fill ring",
            RingMap::map(
                b,
                libc::XDP_UMEM_PGOFF_FILL_RING,
                offsets(fill_off),
                cfg.frames,
            ),
        )?;
        let comp = step(
            "mmap completion ring",
            RingMap::map(
                b,
                libc::XDP_UMEM_PGOFF_COMPLETION_RING,
                offsets(comp_off),
                cfg.ring_size,
            ),
        )?;

        if cfg.busy_poll {
            set_busy_poll(b)?;
        }

        let mut sock = XskSocket {
            fd,
            rx: Consumer::new(rx),
            fill: Producer::new(fill),
            tx: Producer::new(tx),
            comp: Consumer::new(comp),
            umem,
            free: Vec::with_capacity(cfg.frames as usize),
            tx_reserve: (cfg.frames / 8) as usize,
            fill_depth: match cfg.fill_depth {
                0 => usize::MAX,
                n => n as usize,
            },
            queue,
            zero_copy: false,
            busy_poll: cfg.busy_poll,
            posted: 0,
        };
        // Every frame starts idle; all but the TX reserve go to the fill ring.
        sock.free
            .extend((0..cfg.frames).map(|i| sock.umem.frame_addr(i)));
        sock.refill();

        let mode = match cfg.zero_copy {
            ZeroCopy::Auto => 0,
            ZeroCopy::Require => libc::XDP_ZEROCOPY,
        };
        let addr = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: libc::XDP_USE_NEED_WAKEUP | mode,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        // A socket of a process that just died may still hold the queue for a moment: the
        // kernel releases it from a workqueue. Retry EBUSY briefly, so a restart right after a
        // crash works.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            // SAFETY: `addr` is a valid sockaddr_xdp of the size passed.
            let rc = unsafe {
                libc::bind(
                    sock.fd.as_raw_fd(),
                    (&addr as *const libc::sockaddr_xdp).cast(),
                    std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                break;
            }
            let error = io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EBUSY) || std::time::Instant::now() > deadline {
                return Err(XskError {
                    step: "bind",
                    error,
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let opts: u32 = step(
            "XDP_OPTIONS",
            getsockopt(sock.fd.as_fd(), libc::SOL_XDP, libc::XDP_OPTIONS),
        )?;
        sock.zero_copy = opts & libc::XDP_OPTIONS_ZEROCOPY != 0;
        Ok(sock)
    }

    /// The RX queue this socket serves.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// True when the driver runs this socket in zero-copy mode.
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Takes up to [`BATCH`] received frames and calls `f` on each, writable. `f` returns
    /// [`Verdict::Recycle`] to give the frame back, or [`Verdict::Transmit`] with the length to
    /// send after rewriting it in place (no longer than received). Descriptors whose bytes leave
    /// their frame (never produced by a correct kernel) are skipped and counted, as are longer
    /// answers.
    pub fn receive(&mut self, mut f: impl FnMut(&mut [u8]) -> Verdict) -> Batch {
        // An empty ring (most rounds of a spinning worker) returns before the descriptor arrays
        // are set up; otherwise the producer index read here is the batch's only one.
        let ready = (self.rx.available(BATCH as u32) as usize).min(BATCH);
        if ready == 0 {
            return Batch::default();
        }
        let mut descs = [libc::xdp_desc {
            addr: 0,
            len: 0,
            options: 0,
        }; BATCH];
        // `ready` were published: all of them are taken.
        let n = self.rx.consume(&mut descs[..ready]);
        let mut out = [libc::xdp_desc {
            addr: 0,
            len: 0,
            options: 0,
        }; BATCH];
        let lent = lend(
            &mut self.umem,
            &descs[..n],
            &mut f,
            &mut out,
            &mut self.free,
        );
        let nt = lent.tx;
        let sent = if nt > 0 {
            self.tx.produce(&out[..nt])
        } else {
            0
        };
        self.posted += sent as u64;
        for d in &out[sent..nt] {
            // TX ring full: the frame is dropped (counted by the caller) and reused.
            self.free.push(self.umem.frame_base(d.addr));
        }
        if sent > 0 {
            self.kick_tx();
        }
        self.refill();
        Batch {
            rx: n,
            tx: sent,
            tx_dropped: nt - sent,
            bad_descs: lent.bad_descs,
            bad_lengths: lent.bad_lengths,
        }
    }

    /// Builds a new frame with `write` (which returns its length, or `None` to give up) in an
    /// idle frame and queues it on the TX ring without telling the kernel: a batch of frames is
    /// posted, then [`XskSocket::flush_tx`] sends them. False when no idle frame or TX slot is
    /// free, or `write` gave up: the caller counts the drop.
    pub fn post(&mut self, write: impl FnOnce(&mut [u8]) -> Option<usize>) -> bool {
        if self.tx.free(1) == 0 || self.free.is_empty() {
            self.complete();
            if self.tx.free(1) == 0 {
                return false;
            }
        }
        let Some(addr) = self.free.pop() else {
            return false;
        };
        let size = self.umem.frame_size();
        let len = self.umem.bytes_mut(addr, size).and_then(write);
        match len {
            Some(len) if len > 0 && len <= size as usize => {
                let desc = libc::xdp_desc {
                    addr,
                    len: len as u32,
                    options: 0,
                };
                let sent = self.tx.produce(&[desc]) == 1;
                if sent {
                    self.posted += 1;
                } else {
                    self.free.push(addr);
                }
                sent
            }
            _ => {
                self.free.push(addr);
                false
            }
        }
    }

    /// Frames in the fill ring that the kernel has not taken yet.
    pub fn fill_queued(&self) -> u32 {
        self.fill.pending()
    }

    /// Frames put on the TX ring since the socket was opened: in-place answers and built frames.
    pub fn posted(&self) -> u64 {
        self.posted
    }

    /// Tells the kernel about the frames [`XskSocket::post`] queued (see
    /// [`XskSocket::push_tx`] for copy mode). Returns true when frames are still waiting: the
    /// device pushed back (kick again soon).
    pub fn flush_tx(&self) -> bool {
        if self.zero_copy {
            self.kick_tx();
            return false;
        }
        self.push_tx()
    }

    /// Waits up to `timeout` for received frames or for `extra` to become readable (an eventfd
    /// that other threads signal). Returns true when either is ready.
    pub fn wait_with(&self, extra: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
        let mut pfds = [
            libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: extra.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        poll(&mut pfds, timeout)
    }

    /// Takes back the frames the kernel has finished transmitting, and refills the fill ring.
    pub fn complete(&mut self) -> usize {
        let mut addrs = [0u64; BATCH];
        let mut total = 0;
        loop {
            let n = self.comp.consume(&mut addrs);
            for &a in &addrs[..n] {
                self.free.push(self.umem.frame_base(a));
            }
            total += n;
            if n < BATCH {
                break;
            }
        }
        if total > 0 {
            self.refill();
        }
        total
    }

    /// Moves idle frames into the fill ring, as many as fit, keeping the TX reserve back.
    fn refill(&mut self) {
        let spare = self.free.len().saturating_sub(self.tx_reserve);
        let mut room = self.fill.free(spare as u32) as usize;
        if self.fill_depth != usize::MAX {
            room = room.min(self.fill_depth.saturating_sub(self.fill.pending() as usize));
        }
        let k = room.min(spare);
        if k == 0 {
            return;
        }
        let start = self.free.len() - k;
        let done = self.fill.produce(&self.free[start..]);
        self.free.truncate(self.free.len() - done);
    }

    /// Asks the kernel to process the TX ring: always in copy mode, and in zero-copy mode when
    /// the driver asks for a wakeup.
    fn kick_tx(&self) {
        if self.zero_copy {
            if self.tx.needs_wakeup() {
                self.sendto();
            }
            return;
        }
        self.push_tx();
    }

    /// Copy mode transmits only inside sendto(2), at most 32 frames per call (the kernel's
    /// TX_BATCH_SIZE), and a call that leaves frames behind fails with EAGAIN though it sent
    /// 32: so calls again while each call takes frames from the ring, and stops when one takes
    /// none (the device pushed back, or is down). True when frames are still waiting.
    fn push_tx(&self) -> bool {
        let mut waiting = self.tx.pending();
        while waiting > 0 {
            self.sendto();
            let left = self.tx.pending();
            if left == waiting {
                break;
            }
            waiting = left;
        }
        waiting > 0
    }

    /// A zero-length non-blocking sendto(2): the kernel transmits from the TX ring. Its result
    /// says little (EAGAIN after a full batch, EBUSY after a dropped frame): callers read the
    /// ring's consumer index instead.
    fn sendto(&self) {
        // SAFETY: a zero-length, non-blocking sendto on our own socket; no buffer is passed.
        unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
    }

    /// Waits up to `timeout` for received frames (poll(2); it also wakes the driver when the
    /// fill ring asks for it). Returns true when frames are ready.
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        let mut pfds = [libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        poll(&mut pfds, timeout)
    }

    /// For spinning and busy-polling workers: asks the kernel to make progress (refill from the
    /// fill ring, or run a busy-poll round; in copy mode, transmit what the device pushed back
    /// before, which poll(2) would do for a waiting worker) without blocking, when it needs it.
    pub fn kick(&self) {
        if !self.zero_copy && self.tx.pending() > 0 {
            self.push_tx();
        }
        if self.busy_poll || self.fill.needs_wakeup() || self.rx.needs_wakeup() {
            // SAFETY: a zero-length, non-blocking recvfrom on our own socket; no buffer is passed.
            unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
        }
    }

    /// The NAPI instance the kernel busy-polls for this socket (SO_INCOMING_NAPI_ID), or 0 when
    /// it has none: the driver registered no NAPI for the queue (veth does not), and busy
    /// polling the socket does nothing.
    pub fn napi_id(&self) -> io::Result<u32> {
        let id: libc::c_uint =
            getsockopt(self.fd.as_fd(), libc::SOL_SOCKET, libc::SO_INCOMING_NAPI_ID)?;
        Ok(id)
    }

    /// The kernel's counters for this socket.
    pub fn stats(&self) -> io::Result<XskStats> {
        let s: RawStats = getsockopt(self.fd.as_fd(), libc::SOL_XDP, libc::XDP_STATISTICS)?;
        let [
            rx_dropped,
            rx_invalid_descs,
            tx_invalid_descs,
            rx_ring_full,
            rx_fill_ring_empty,
            tx_ring_empty,
        ] = s.0;
        Ok(XskStats {
            rx_dropped,
            rx_invalid_descs,
            tx_invalid_descs,
            rx_ring_full,
            rx_fill_ring_empty,
            tx_ring_empty,
        })
    }
}

impl AsFd for XskSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wait shorter than a millisecond sleeps for it. With poll(2)'s millisecond timeout it
    /// was 0: a worker whose next TCP timer was 0.6 ms away spun through zero-timeout polls
    /// until it was due (seen as runs of `poll(..., 0) = 0` in an strace of the HTTP benchmark).
    #[test]
    fn a_sub_millisecond_wait_sleeps() {
        let (read, _write) = nix::unistd::pipe().unwrap();
        let mut pfds = [libc::pollfd {
            fd: read.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let wait = Duration::from_micros(600);
        let start = std::time::Instant::now();
        assert!(!poll(&mut pfds, wait).unwrap(), "nothing to read");
        // A lower bound only: the kernel sleeps at least the timeout, however loaded it is.
        assert!(
            start.elapsed() >= wait,
            "returned after {:?}",
            start.elapsed()
        );
    }

    fn desc(addr: u64, len: u32) -> libc::xdp_desc {
        libc::xdp_desc {
            addr,
            len,
            options: 0,
        }
    }

    /// A batch of RX descriptors as a broken (or hostile) kernel could publish them: only those
    /// whose bytes lie within one frame reach the closure; the others are counted, and their
    /// frame comes back only when it is one of ours.
    #[test]
    fn bad_rx_descriptors_are_counted_and_never_lent() {
        let mut umem = Umem::new(4, 2048).unwrap();
        let descs = [
            desc(256, 60),            // good: headroom, then a small frame
            desc(2048 + 2000, 100),   // strays into frame 2
            desc(3 * 2048, 2049),     // longer than a frame
            desc(4 * 2048 + 256, 60), // beyond the UMEM
            desc(u64::MAX - 10, 60),  // address overflow
            desc(2 * 2048, 2048),     // good: exactly one frame
        ];
        let (mut out, mut free) = ([desc(0, 0); BATCH], Vec::new());
        let mut lent_lens = Vec::new();
        let lent = lend(
            &mut umem,
            &descs,
            &mut |frame| {
                lent_lens.push(frame.len());
                Verdict::Recycle
            },
            &mut out,
            &mut free,
        );
        assert_eq!(lent_lens, [60, 2048]);
        assert_eq!(lent.bad_descs, 4);
        assert_eq!(lent.tx, 0);
        // Frames 0, 1 (the stray's own), 3 (the long one's own) and 2; none outside the area.
        free.sort_unstable();
        assert_eq!(free, [0, 2048, 2 * 2048, 3 * 2048]);
    }

    /// An answer may not be longer than what was received: the bytes after it are an older
    /// packet's, and sending them would leak it.
    #[test]
    fn an_answer_longer_than_the_frame_received_is_refused() {
        let mut umem = Umem::new(4, 2048).unwrap();
        let descs = [desc(256, 60), desc(2048 + 256, 60), desc(4096 + 256, 60)];
        let (mut out, mut free) = ([desc(0, 0); BATCH], Vec::new());
        let mut answers = [61u32, 60, 0].into_iter();
        let lent = lend(
            &mut umem,
            &descs,
            &mut |_| Verdict::Transmit(answers.next().unwrap()),
            &mut out,
            &mut free,
        );
        assert_eq!(lent.tx, 1);
        assert_eq!(lent.bad_lengths, 1);
        assert_eq!((out[0].addr, out[0].len), (2048 + 256, 60));
        free.sort_unstable();
        assert_eq!(free, [0, 4096]);
    }
}
