//! Loss recovery: the SACK scoreboard (RFC 2018), RFC 6675's loss trigger and `pipe`, and the
//! next hole to retransmit (NewReno's one hole at a time without SACK, RFC 6582).

use super::{Connection, DUP_THRESH, Plan, SCOREBOARD_RANGES};
use crate::wire::{seq::Seq, tcp::SackBlocks};

impl Connection {
    /// RFC 6675 §5's trigger: DupThresh duplicate ACKs, or more than (DupThresh - 1) * MSS
    /// SACKed above SND.UNA.
    pub(super) fn loss_detected(&self) -> bool {
        self.snd_max != self.snd_una
            && (self.dupacks >= DUP_THRESH
                || (self.sack_enabled
                    && self.sacked_bytes() > (DUP_THRESH as usize - 1) * self.mss))
    }

    pub(super) fn update_scoreboard(&mut self, blocks: &SackBlocks, ack: Seq) {
        let una = ack.max(self.snd_una);
        self.scoreboard.retain_mut(|r| {
            r.0 = r.0.max(una);
            r.1 > r.0
        });
        for &(left, right) in blocks.as_slice() {
            // Only what lies above the cumulative ACK and was sent (D-SACKs fall out here).
            let left = left.max(una);
            let right = right.min(self.snd_max);
            if right <= left {
                continue;
            }
            self.add_sacked(left, right);
        }
    }

    pub(super) fn add_sacked(&mut self, mut left: Seq, mut right: Seq) {
        let mut i = 0;
        while i < self.scoreboard.len() {
            let (l, r) = self.scoreboard[i];
            if r < left {
                i += 1;
            } else if l > right {
                break;
            } else {
                left = left.min(l);
                right = right.max(r);
                self.scoreboard.remove(i);
            }
        }
        if self.scoreboard.len() < SCOREBOARD_RANGES {
            self.scoreboard.insert(i, (left, right));
        }
    }

    /// True when the segment at SND.UNA is marked SACKed: the peer SACKed it and then
    /// acknowledged up to it but not past it, so it no longer has it (reneging).
    pub(super) fn head_sacked(&self) -> bool {
        self.sack_enabled && self.scoreboard.first().is_some_and(|r| r.0 == self.snd_una)
    }

    pub(super) fn sacked_bytes(&self) -> usize {
        if self.sack_enabled {
            self.scoreboard.iter().map(|&(l, r)| r - l).sum()
        } else {
            (self.dupacks as usize * self.mss).min(self.snd_max - self.snd_una)
        }
    }

    /// Bytes in flight as RFC 6675's `pipe` estimates them. After a timeout, what lies between
    /// SND.UNA and the go-back-N pointer minus what the peer SACKed there.
    pub(super) fn pipe(&self) -> usize {
        let flight = self.snd_nxt - self.snd_una;
        if self.recovery.is_some() {
            return flight.saturating_sub(self.sacked_bytes() + self.lost_unretransmitted());
        }
        if self.loss_recover.is_some() {
            return flight.saturating_sub(self.sacked_below(self.snd_nxt));
        }
        flight
    }

    /// SACKed bytes between SND.UNA and `upto`.
    pub(super) fn sacked_below(&self, upto: Seq) -> usize {
        self.scoreboard
            .iter()
            .filter(|&&(l, _)| l < upto)
            .map(|&(l, r)| r.min(upto) - l)
            .sum()
    }

    /// The end of the highest data the peer has not SACKed (SND.MAX unless the tail was
    /// SACKed).
    pub(super) fn unsacked_tail(&self) -> Seq {
        let mut end = self.snd_max;
        for &(l, r) in self.scoreboard.iter().rev() {
            if r < end {
                break;
            }
            end = end.min(l);
        }
        end.max(self.snd_una)
    }

    /// Going back N after a timeout: the first sequence number at or after `from` that the
    /// peer has not SACKed, and where the next SACKed range after it begins (if one does).
    pub(super) fn unsacked_from(&self, from: Seq) -> (Seq, Option<Seq>) {
        let mut at = from;
        for &(l, r) in &self.scoreboard {
            if r <= at {
                continue;
            }
            if l <= at {
                at = r;
                continue;
            }
            return (at, Some(l));
        }
        (at, None)
    }

    /// True when recovery follows the peer's SACK blocks (else NewReno's one hole at a time).
    pub(super) fn uses_scoreboard(&self) -> bool {
        self.sack_enabled && !self.scoreboard.is_empty()
    }

    /// Holes the sender believes lost and has not retransmitted in this recovery.
    pub(super) fn lost_unretransmitted(&self) -> usize {
        if !self.uses_scoreboard() {
            return if self.high_rxt <= self.snd_una {
                self.mss.min(self.snd_nxt - self.snd_una)
            } else {
                0
            };
        }
        let mut lost = 0;
        let mut at = self.snd_una;
        for &(l, r) in &self.scoreboard {
            let from = at.max(self.high_rxt);
            if l > from {
                lost += l - from;
            }
            at = r;
        }
        lost
    }

    /// The next hole to retransmit in loss recovery: (seq, len) bounded by the MSS and the
    /// next SACKed range.
    pub(super) fn next_hole(&self) -> Option<(Seq, usize)> {
        let start = self.high_rxt.max(self.snd_una);
        let mss = self.current_mss();
        if !self.uses_scoreboard() {
            return (self.high_rxt <= self.snd_una && self.snd_nxt > self.snd_una)
                .then(|| (self.snd_una, mss.min(self.snd_nxt - self.snd_una)));
        }
        let mut at = self.snd_una;
        for &(l, r) in &self.scoreboard {
            let from = at.max(start);
            if l > from {
                return Some((from, mss.min(l - from)));
            }
            at = r;
        }
        None
    }

    pub(super) fn retransmission(&self) -> Option<Plan> {
        self.recovery?;
        let (seq, len) = self.next_hole()?;
        if !self.window_admits(seq) {
            return None;
        }
        let first = self.high_rxt <= self.snd_una;
        if !first && self.pipe() + len > self.cc.window() {
            return None;
        }
        Some(self.data_plan(seq, len))
    }
}
