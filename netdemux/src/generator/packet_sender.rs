//! `gen --sender packet`: one thread's sending loop through a raw packet socket
//! ([`PacketSender`]): a frame per flow built up front, batches of [`MAX_BATCH`] handed to the
//! kernel's transmit path, hits and misses interleaved in the proportion of the hit ratio.

use std::{sync::atomic::Ordering, time::Instant};

use anyhow::{Context as _, Result};

use super::{Shared, pace};
use crate::xsk::packet::{MAX_BATCH, PacketSender};

/// The frames of every flow: `hits[i]` from source port `BASE_PORT + i` to the destination,
/// `misses[i]` likewise to the miss destination (empty without one).
#[derive(Debug)]
pub struct FlowFrames {
    pub hits: Vec<Vec<u8>>,
    pub misses: Vec<Vec<u8>>,
}

/// Which frames go out, in order: flow after flow, a hit wherever the hits so far fall short of
/// the ratio's share of the frames so far (so any window of frames holds the ratio to within
/// one frame).
#[derive(Debug)]
struct Order {
    ratio: f64,
    sent: u64,
    hits: u64,
}

impl Order {
    /// Whether the next frame is a hit, and its flow's index among `flows`.
    fn next(&mut self, flows: usize) -> (bool, usize) {
        self.sent += 1;
        let hit = (self.hits as f64) < (self.sent as f64 * self.ratio).round();
        let misses = self.sent - 1 - self.hits;
        let flow = if hit { self.hits } else { misses } as usize % flows.max(1);
        self.hits += u64::from(hit);
        (hit, flow)
    }
}

/// Sends until the deadline or the stop flag, at `per_thread_rate` frames/s if set.
pub fn send(
    ifindex: u32,
    frames: &FlowFrames,
    ratio: f64,
    per_thread_rate: Option<f64>,
    shared: &Shared,
) -> Result<()> {
    let socket = PacketSender::bind(ifindex).context("cannot open a packet socket")?;
    let flows = frames.hits.len();
    let mut order = Order {
        ratio,
        sent: 0,
        hits: 0,
    };
    let mut batch: Vec<&[u8]> = Vec::with_capacity(MAX_BATCH);
    let mut offered = 0u64;
    let began = Instant::now();
    while Instant::now() < shared.deadline && !shared.stop.load(Ordering::Relaxed) {
        batch.clear();
        let mut hits = 0;
        while batch.len() < MAX_BATCH {
            let (hit, flow) = order.next(flows);
            batch.push(if hit {
                &frames.hits[flow]
            } else {
                &frames.misses[flow]
            });
            hits += u64::from(hit);
        }
        // Hand the whole batch over: what the device refused counts as offered (the device
        // counts it as dropped), and the frames after it go in the next call.
        let mut at = 0;
        while at < batch.len() {
            let sent = socket
                .send(&batch[at..])
                .context("sending on the packet socket failed")?;
            shared
                .refused
                .fetch_add(sent.refused as u64, Ordering::Relaxed);
            at += sent.accepted + sent.refused;
        }
        shared.hit_count.fetch_add(hits, Ordering::Relaxed);
        offered += batch.len() as u64;
        shared
            .progress
            .record(batch.len() as u64, shared.start.elapsed());
        pace(offered, per_thread_rate, began);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ratio: f64, flows: usize, n: usize) -> Vec<(bool, usize)> {
        let mut o = Order {
            ratio,
            sent: 0,
            hits: 0,
        };
        (0..n).map(|_| o.next(flows)).collect()
    }

    #[test]
    fn every_window_holds_the_ratio_and_flows_take_turns() {
        let all = run(1.0, 4, 8);
        assert!(all.iter().all(|&(h, _)| h));
        assert_eq!(
            all.iter().map(|&(_, f)| f).collect::<Vec<_>>(),
            [0, 1, 2, 3, 0, 1, 2, 3]
        );
        assert!(run(0.0, 4, 100).iter().all(|&(h, _)| !h));
        let q = run(0.25, 3, 400);
        for w in q.windows(40) {
            let hits = w.iter().filter(|&&(h, _)| h).count();
            assert!((9..=11).contains(&hits), "{hits} hits in 40");
        }
        // Misses cycle through the flows on their own count.
        let misses: Vec<usize> = q.iter().filter(|&&(h, _)| !h).map(|&(_, f)| f).collect();
        assert_eq!(&misses[..6], &[0, 1, 2, 0, 1, 2]);
    }
}
