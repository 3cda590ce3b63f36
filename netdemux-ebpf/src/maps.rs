//! The maps the program shares with userspace (names and types in `netdemux_common`).

use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray, PerCpuHashMap, XskMap},
};
use netdemux_common::{BindKey, BindStats, Counter, DEFAULT_MAX_BINDINGS, MAX_QUEUES, StateInfo};

/// Bound socket addresses and their per-CPU counters. Userspace resizes it at load time.
#[map(name = "NDX_BINDS")]
pub static BINDS: PerCpuHashMap<BindKey, BindStats> =
    PerCpuHashMap::with_max_entries(DEFAULT_MAX_BINDINGS, 0);

/// Per-CPU verdict counters, indexed by [`Counter`].
#[map(name = "NDX_COUNTERS")]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

/// The AF_XDP socket of each RX queue.
#[map(name = "NDX_XSKS")]
pub static XSKS: XskMap = XskMap::with_max_entries(MAX_QUEUES, 0);

/// Written by userspace only; declared here so it is created and pinned with the other maps.
#[map(name = "NDX_INFO")]
pub static INFO: Array<StateInfo> = Array::with_max_entries(1, 0);

/// Adds one to this CPU's slot of `counter`.
#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: the pointer is this CPU's slot of a per-CPU array; XDP programs are not
        // preempted or migrated while they run, so nothing else writes it concurrently.
        unsafe { *slot += 1 };
    }
}
