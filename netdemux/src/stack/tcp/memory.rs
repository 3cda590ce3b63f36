//! The memory every connection's buffers take, shared by all connections of a daemon (Linux's
//! `tcp_mem`): buffers charge it as they grow and give back when they shrink or go. Below the
//! pressure mark windows open freely; above it they stop growing (Linux clamps them to a few
//! segments); at the limit no buffer grows — new data that needs room is dropped and new
//! connections are refused, counted — so the total never passes the limit.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A memory budget.
#[derive(Debug)]
pub struct MemoryBudget {
    used: AtomicUsize,
    pressure: usize,
    limit: usize,
}

impl MemoryBudget {
    /// A budget of `limit` bytes, under pressure from three quarters of it.
    pub fn new(limit: usize) -> MemoryBudget {
        MemoryBudget {
            used: AtomicUsize::new(0),
            pressure: limit / 4 * 3,
            limit,
        }
    }

    /// No limit (tests, tools).
    pub fn unlimited() -> MemoryBudget {
        MemoryBudget::new(usize::MAX)
    }

    /// The default for this machine: a sixteenth of its memory, as Linux sizes tcp_mem's
    /// pressure mark (at least 64 MiB; 1 GiB when the machine does not say).
    pub fn default_limit() -> usize {
        let total = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
            })
            .map(|kib| kib * 1024);
        total.map_or(1 << 30, |t| (t / 16).max(64 << 20))
    }

    /// Takes `bytes` if the limit allows; false (nothing taken) otherwise.
    pub fn try_take(&self, bytes: usize) -> bool {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let Some(after) = used.checked_add(bytes).filter(|&a| a <= self.limit) else {
                return false;
            };
            match self
                .used
                .compare_exchange_weak(used, after, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    /// Gives `bytes` back.
    pub fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Bytes taken now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes that may still be taken.
    pub fn available(&self) -> usize {
        self.limit.saturating_sub(self.used())
    }

    /// True above the pressure mark: windows stop growing.
    pub fn under_pressure(&self) -> bool {
        self.used() >= self.pressure
    }

    /// True when less than `reserve` bytes are left: new connections are refused.
    pub fn nearly_exhausted(&self, reserve: usize) -> bool {
        self.available() < reserve
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_up_to_the_limit_and_back() {
        let b = MemoryBudget::new(1000);
        assert!(b.try_take(600));
        assert!(!b.under_pressure());
        assert!(b.try_take(200));
        assert!(b.under_pressure(), "800 of 1000 is past three quarters");
        assert!(!b.try_take(201), "past the limit");
        assert_eq!(b.used(), 800);
        b.give_back(800);
        assert_eq!((b.used(), b.available()), (0, 1000));
        assert!(MemoryBudget::default_limit() >= 64 << 20);
    }
}
