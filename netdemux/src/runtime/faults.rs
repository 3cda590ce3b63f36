//! Fault injection for tests (`netdemux run --fault-loss/--fault-reorder`): [`Faulty`] wraps a
//! queue's socket and drops a seeded share of its TCP frames, and holds another share back to
//! deliver after the next one (reordered), in both directions. Other frames pass untouched. Off
//! unless asked for; the worker runs on the bare socket then.

use std::{io, os::fd::BorrowedFd, time::Duration};

use netdemux_common::PROTO_TCP;

use super::frames::Frames;
use crate::xsk::{Batch, Verdict, XskStats};

/// How much to disturb.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FaultConfig {
    /// Share of segments dropped, 0.0-1.0.
    pub loss: f64,
    /// Share of segments delivered after the next one, 0.0-1.0.
    pub reorder: f64,
    /// Seed of the generator.
    pub seed: u64,
}

impl FaultConfig {
    /// True when nothing is disturbed.
    pub fn is_off(&self) -> bool {
        self.loss <= 0.0 && self.reorder <= 0.0
    }
}

/// What happens to one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Goes through.
    Pass,
    /// Is dropped.
    Drop,
    /// Is held and goes after the next segment.
    Hold,
}

/// A seeded decider.
#[derive(Debug)]
pub struct Faults {
    cfg: FaultConfig,
    state: u64,
}

impl Faults {
    /// Faults as configured, or `None` when off.
    pub fn new(cfg: FaultConfig) -> Option<Faults> {
        (!cfg.is_off()).then(|| Faults {
            cfg,
            state: cfg.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
        })
    }

    fn uniform(&mut self) -> f64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        ((self.state >> 11) as f64) / ((1u64 << 53) as f64)
    }

    /// The fate of the next segment.
    pub fn fate(&mut self) -> Fate {
        let x = self.uniform();
        if x < self.cfg.loss {
            Fate::Drop
        } else if x < self.cfg.loss + self.cfg.reorder {
            Fate::Hold
        } else {
            Fate::Pass
        }
    }
}

/// A socket whose TCP frames are disturbed as [`Faults`] decides.
pub struct Faulty<S> {
    inner: S,
    faults: Faults,
    /// A received TCP frame held back: delivered after the next one.
    held_rx: Option<Vec<u8>>,
    /// A TCP frame to send held back: posted after the next one.
    held_tx: Option<Vec<u8>>,
    /// Where frames to send are built before their fate is known (a UMEM frame's size).
    scratch: Vec<u8>,
    /// TCP frames dropped.
    dropped: u64,
    /// TCP frames held back and delivered late (a hold while one is held already passes).
    reordered: u64,
}

fn is_tcp(frame: &[u8]) -> bool {
    crate::wire::classify(frame).is_some_and(|c| c.key.proto == PROTO_TCP)
}

impl<S: Frames> Faulty<S> {
    /// Wraps `inner`, whose frames are `frame_size` bytes.
    pub fn new(inner: S, faults: Faults, frame_size: usize) -> Self {
        Faulty {
            inner,
            faults,
            held_rx: None,
            held_tx: None,
            scratch: vec![0; frame_size],
            dropped: 0,
            reordered: 0,
        }
    }

    /// Posts the frame held back, if any.
    fn release_tx(&mut self) {
        if let Some(frame) = self.held_tx.take() {
            let _ = self.inner.post(|out| {
                out.get_mut(..frame.len())?.copy_from_slice(&frame);
                Some(frame.len())
            });
        }
    }
}

impl<S: Frames> Frames for Faulty<S> {
    fn queue(&self) -> u32 {
        self.inner.queue()
    }

    fn zero_copy(&self) -> bool {
        self.inner.zero_copy()
    }

    fn complete(&mut self) -> usize {
        self.inner.complete()
    }

    fn receive(&mut self, mut f: impl FnMut(&mut [u8]) -> Verdict) -> Batch {
        let (faults, held) = (&mut self.faults, &mut self.held_rx);
        let (dropped, reordered) = (&mut self.dropped, &mut self.reordered);
        let batch = self.inner.receive(|frame| {
            if !is_tcp(frame) {
                return f(frame);
            }
            match faults.fate() {
                Fate::Drop => {
                    *dropped += 1;
                    return Verdict::Recycle;
                }
                Fate::Hold if held.is_none() => {
                    *reordered += 1;
                    *held = Some(frame.to_vec());
                    return Verdict::Recycle;
                }
                _ => {}
            }
            let verdict = f(frame);
            if let Some(mut late) = held.take() {
                // A TCP frame is never answered in place: its verdict is Recycle.
                let _ = f(&mut late);
            }
            verdict
        });
        if batch.rx == 0
            && let Some(mut late) = self.held_rx.take()
        {
            let _ = f(&mut late);
        }
        batch
    }

    fn post(&mut self, write: impl FnOnce(&mut [u8]) -> Option<usize>) -> bool {
        let Some(len) = write(&mut self.scratch) else {
            return false;
        };
        let Some(frame) = self.scratch.get(..len) else {
            return false;
        };
        if is_tcp(frame) {
            match self.faults.fate() {
                Fate::Drop => {
                    self.dropped += 1;
                    return true;
                }
                Fate::Hold if self.held_tx.is_none() => {
                    self.reordered += 1;
                    self.held_tx = Some(frame.to_vec());
                    return true;
                }
                _ => {}
            }
        }
        let copied = self.inner.post(|out| {
            out.get_mut(..len)?.copy_from_slice(frame);
            Some(len)
        });
        if copied {
            self.release_tx();
        }
        copied
    }

    fn flush_tx(&mut self) -> bool {
        // A frame held back goes after the others of this burst, not later.
        self.release_tx();
        self.inner.flush_tx()
    }

    fn posted(&self) -> u64 {
        self.inner.posted()
    }

    fn kick(&self) {
        self.inner.kick()
    }

    fn wait(&self, extra: Option<BorrowedFd<'_>>, timeout: Duration) -> io::Result<bool> {
        self.inner.wait(extra, timeout)
    }

    fn stats(&self) -> io::Result<XskStats> {
        self.inner.stats()
    }

    fn faults(&self) -> Option<(u64, u64)> {
        Some((self.dropped, self.reordered))
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::{
        runtime::frames::fake::FakeFrames,
        wire::{self, tcp::TcpHeader},
    };

    fn tcp_frame(port: u16) -> Vec<u8> {
        let mut f = vec![0u8; 256];
        let (src, dst): (SocketAddr, SocketAddr) = (
            "198.18.0.1:40000".parse().unwrap(),
            "198.18.0.2:80".parse().unwrap(),
        );
        let h = TcpHeader {
            src_port: port,
            dst_port: 80,
            ..TcpHeader::default()
        };
        let n = wire::tcp::emit(&mut f, [2; 6], [4; 6], src, dst, &h, [b"x", b""]).unwrap();
        f.truncate(n);
        f
    }

    fn udp_frame(port: u16) -> Vec<u8> {
        let mut f = vec![0u8; 256];
        let src = SocketAddr::from(([198, 18, 0, 1], port));
        let dst = "198.18.0.2:53".parse().unwrap();
        let n = wire::udp::emit(&mut f, [2; 6], [4; 6], src, dst, b"x").unwrap();
        f.truncate(n);
        f
    }

    fn faulty(loss: f64, reorder: f64) -> Faulty<FakeFrames> {
        let faults = Faults::new(FaultConfig {
            loss,
            reorder,
            seed: 3,
        })
        .unwrap();
        Faulty::new(FakeFrames::default(), faults, 4096)
    }

    /// Receives everything queued; returns the frames the worker saw, in order.
    fn receive_all(s: &mut Faulty<FakeFrames>) -> Vec<Vec<u8>> {
        let mut seen = Vec::new();
        loop {
            let b = s.receive(|f| {
                seen.push(f.to_vec());
                Verdict::Recycle
            });
            if b.rx == 0 {
                return seen;
            }
        }
    }

    #[test]
    fn shares_come_out_as_configured() {
        assert!(Faults::new(FaultConfig::default()).is_none());
        let mut f = Faults::new(FaultConfig {
            loss: 0.02,
            reorder: 0.03,
            seed: 7,
        })
        .unwrap();
        let fates: Vec<Fate> = (0..100_000).map(|_| f.fate()).collect();
        let share = |fate| fates.iter().filter(|&&x| x == fate).count() as f64 / 1e5;
        assert!((share(Fate::Drop) - 0.02).abs() < 0.003);
        assert!((share(Fate::Hold) - 0.03).abs() < 0.003);
    }

    #[test]
    fn tcp_frames_are_lost_both_ways_and_others_pass() {
        let mut s = faulty(1.0, 0.0);
        let datagram = udp_frame(2);
        s.inner
            .rx
            .extend([tcp_frame(1), datagram.clone(), tcp_frame(3)]);
        assert_eq!(
            receive_all(&mut s),
            vec![datagram],
            "only the datagram arrives"
        );
        assert!(s.post(|f| {
            let t = tcp_frame(4);
            f[..t.len()].copy_from_slice(&t);
            Some(t.len())
        }));
        let u = udp_frame(5);
        assert!(s.post(|f| {
            f[..u.len()].copy_from_slice(&u);
            Some(u.len())
        }));
        s.flush_tx();
        assert_eq!(
            s.inner.sent,
            vec![u],
            "the segment was dropped, the datagram sent"
        );
        assert_eq!(s.faults(), Some((3, 0)));
    }

    #[test]
    fn a_held_frame_goes_after_the_next_one_or_when_nothing_else_comes() {
        let mut s = faulty(0.0, 1.0);
        s.inner
            .rx
            .extend([tcp_frame(1), tcp_frame(2), tcp_frame(3)]);
        // 1 is held and comes after 2; 3 is held and comes when the ring is empty.
        assert_eq!(
            receive_all(&mut s),
            vec![tcp_frame(2), tcp_frame(1), tcp_frame(3)]
        );
        for port in [4, 5] {
            s.post(|f| {
                let t = tcp_frame(port);
                f[..t.len()].copy_from_slice(&t);
                Some(t.len())
            });
        }
        s.flush_tx();
        assert_eq!(
            s.inner.sent,
            vec![tcp_frame(5), tcp_frame(4)],
            "reordered on the way out"
        );
        assert_eq!(s.faults(), Some((0, 3)));
    }
}
