//! What a queue worker needs from its socket: received frames lent one at a time, frames to
//! build and post, and waiting. [`XskSocket`] is the real one; `faults::Faulty` wraps one to
//! drop and reorder TCP frames in tests. The worker is generic over this, so a wrapper costs
//! nothing when it is not used.

use std::{io, os::fd::BorrowedFd, time::Duration};

use crate::xsk::{Batch, Verdict, XskSocket, XskStats};

/// A queue's frames, as a worker drives them.
pub trait Frames {
    /// The RX queue.
    fn queue(&self) -> u32;
    /// True when the socket runs in zero-copy mode.
    fn zero_copy(&self) -> bool;
    /// Takes back transmitted frames and refills the fill ring.
    fn complete(&mut self) -> usize;
    /// Lends up to a batch of received frames to `f` (see [`XskSocket::receive`]).
    fn receive(&mut self, f: impl FnMut(&mut [u8]) -> Verdict) -> Batch;
    /// Builds a frame with `write` and queues it for transmission without telling the kernel;
    /// false when there is no room (the caller tries again later or counts a drop).
    fn post(&mut self, write: impl FnOnce(&mut [u8]) -> Option<usize>) -> bool;
    /// Tells the kernel about posted frames; true when some still wait (kick again soon).
    fn flush_tx(&mut self) -> bool;
    /// Frames put on the TX ring so far (in-place answers and built frames).
    fn posted(&self) -> u64;
    /// Lets the kernel make progress without blocking (spinning and busy-polling workers).
    fn kick(&self);
    /// Waits up to `timeout` for frames, or for `extra` (an eventfd) when given.
    fn wait(&self, extra: Option<BorrowedFd<'_>>, timeout: Duration) -> io::Result<bool>;
    /// The kernel's counters of the socket.
    fn stats(&self) -> io::Result<XskStats>;
    /// Frames a wrapper dropped and delayed on purpose (tests): (dropped, reordered).
    fn faults(&self) -> Option<(u64, u64)> {
        None
    }
}

impl Frames for XskSocket {
    fn queue(&self) -> u32 {
        XskSocket::queue(self)
    }

    fn zero_copy(&self) -> bool {
        XskSocket::zero_copy(self)
    }

    fn complete(&mut self) -> usize {
        XskSocket::complete(self)
    }

    #[inline]
    fn receive(&mut self, f: impl FnMut(&mut [u8]) -> Verdict) -> Batch {
        XskSocket::receive(self, f)
    }

    #[inline]
    fn post(&mut self, write: impl FnOnce(&mut [u8]) -> Option<usize>) -> bool {
        XskSocket::post(self, write)
    }

    fn flush_tx(&mut self) -> bool {
        XskSocket::flush_tx(self)
    }

    fn posted(&self) -> u64 {
        XskSocket::posted(self)
    }

    fn kick(&self) {
        XskSocket::kick(self)
    }

    fn wait(&self, extra: Option<BorrowedFd<'_>>, timeout: Duration) -> io::Result<bool> {
        match extra {
            Some(fd) => XskSocket::wait_with(self, fd, timeout),
            None => XskSocket::wait(self, timeout),
        }
    }

    fn stats(&self) -> io::Result<XskStats> {
        XskSocket::stats(self)
    }
}

/// An in-memory socket for tests and fuzzing: frames to receive are queued, frames sent are
/// collected.
#[cfg(any(test, feature = "fuzzing"))]
pub mod fake {
    use std::collections::VecDeque;

    use super::*;

    /// A queue's frames in memory.
    #[derive(Default)]
    pub struct FakeFrames {
        /// Frames the next `receive` calls hand out, a batch at a time.
        pub rx: VecDeque<Vec<u8>>,
        /// Frames posted (in-place answers included), in order.
        pub sent: Vec<Vec<u8>>,
        /// Frames posted and not flushed yet.
        pub posted: Vec<Vec<u8>>,
        /// Frames posted so far (in-place answers included).
        pub total: u64,
        /// Flushes that had posted frames to send (a sendto(2) each, or more, on a real socket).
        pub flushes: usize,
        /// Frames of a UMEM frame's size that `post` builds in before it allocates new ones
        /// (their old bytes stay, as in a UMEM).
        pub spare: Vec<Vec<u8>>,
    }

    impl Frames for FakeFrames {
        fn queue(&self) -> u32 {
            0
        }

        fn zero_copy(&self) -> bool {
            false
        }

        fn complete(&mut self) -> usize {
            0
        }

        fn receive(&mut self, mut f: impl FnMut(&mut [u8]) -> Verdict) -> Batch {
            let mut batch = Batch::default();
            for _ in 0..crate::xsk::socket::BATCH {
                let Some(mut frame) = self.rx.pop_front() else {
                    break;
                };
                batch.rx += 1;
                if let Verdict::Transmit(len) = f(&mut frame) {
                    // The real socket refuses these (they would send an older packet's bytes).
                    assert!(
                        len as usize <= frame.len(),
                        "an answer longer than the frame received"
                    );
                    frame.truncate(len as usize);
                    self.sent.push(frame);
                    self.total += 1;
                    batch.tx += 1;
                }
            }
            batch
        }

        fn post(&mut self, write: impl FnOnce(&mut [u8]) -> Option<usize>) -> bool {
            let mut frame = self.spare.pop().unwrap_or_else(|| vec![0u8; 4096]);
            frame.resize(4096, 0);
            match write(&mut frame) {
                Some(len) => {
                    frame.truncate(len);
                    self.posted.push(frame);
                    self.total += 1;
                    true
                }
                None => false,
            }
        }

        fn flush_tx(&mut self) -> bool {
            if !self.posted.is_empty() {
                self.flushes += 1;
            }
            self.sent.append(&mut self.posted);
            false
        }

        fn posted(&self) -> u64 {
            self.total
        }

        fn kick(&self) {}

        fn wait(&self, _: Option<BorrowedFd<'_>>, _: Duration) -> io::Result<bool> {
            Ok(false)
        }

        fn stats(&self) -> io::Result<XskStats> {
            Ok(XskStats::default())
        }
    }
}
