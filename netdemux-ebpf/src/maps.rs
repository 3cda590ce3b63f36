//! The maps the program shares with userspace (names and types in `netdemux_common`).

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray, Stack, XskMap},
};
use netdemux_common::{
    BindKey, BindStats, Counter, Counters, DEFAULT_MAX_BINDINGS, GenSettings, MAX_QUEUES,
    PORT_SLOTS, PortEntry, StateInfo,
};

/// Binding set 0: bound socket addresses and their counter indices. Userspace resizes it at
/// load time.
#[map(name = "NDX_BINDS")]
pub static BINDS: HashMap<BindKey, u32> = HashMap::with_max_entries(DEFAULT_MAX_BINDINGS, 0);

/// Binding set 1: userspace fills the set not in use, then flips [`ACTIVE`].
#[map(name = "NDX_BINDS1")]
pub static BINDS1: HashMap<BindKey, u32> = HashMap::with_max_entries(DEFAULT_MAX_BINDINGS, 0);

/// Each binding's per-CPU packet and byte counts, by counter index (shared by both sets: a
/// binding kept across a replacement keeps its index). Userspace sizes it at load time.
#[map(name = "NDX_STATS")]
pub static STATS: PerCpuArray<BindStats> =
    PerCpuArray::with_max_entries(2 * DEFAULT_MAX_BINDINGS, 0);

/// Counter indices given back; used by userspace only (declared so it is created and pinned
/// with the rest).
#[map(name = "NDX_FREE")]
pub static FREE: Stack<u32> = Stack::with_max_entries(2 * DEFAULT_MAX_BINDINGS, 0);

/// The lowest counter index never handed out; used by userspace only.
#[map(name = "NDX_NEXT")]
pub static NEXT: Array<u32> = Array::with_max_entries(1, 0);

/// Which binding set (and port index) the program uses: 0 or 1. Global data (the object's
/// `.bss`, a one-entry array map the kernel hands the program by address): the program reads it
/// with one load, without the lookup — key on the stack, bounds check — an array map costs.
/// Userspace flips it through that map ([`netdemux_common::map_names::ACTIVE`]).
#[unsafe(no_mangle)]
static mut NDX_ACTIVE_SET: u32 = 0;

/// The binding set in use.
#[inline(always)]
pub fn active_set() -> u32 {
    // SAFETY: a valid, aligned u32 of the program's global data; the program only reads it, and
    // userspace's writes are whole-value map updates (0 <-> 1 differ in one byte, so no read
    // can see a mix). Volatile: the value changes behind the program's back.
    unsafe { core::ptr::read_volatile(&raw const NDX_ACTIVE_SET) }
}

/// Per-CPU verdict counters: one entry, looked up once per frame.
#[map(name = "NDX_COUNTERS")]
pub static COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(1, 0);

/// The bindings of each (protocol, family, port) of set 0 (see `PortEntry`): a frame to a port
/// with none is passed after one array lookup, one to a binding in the entry's lanes is matched
/// against the addresses in the entry, without hashing or another lookup.
#[map(name = "NDX_PORTS")]
pub static PORTS: Array<PortEntry> = Array::with_max_entries(PORT_SLOTS, 0);

/// The port index of binding set 1.
#[map(name = "NDX_PORTS1")]
pub static PORTS1: Array<PortEntry> = Array::with_max_entries(PORT_SLOTS, 0);

/// The AF_XDP socket of each RX queue.
#[map(name = "NDX_XSKS")]
pub static XSKS: XskMap = XskMap::with_max_entries(MAX_QUEUES, 0);

/// Written by userspace only; declared here so it is created and pinned with the other maps.
#[map(name = "NDX_INFO")]
pub static INFO: Array<StateInfo> = Array::with_max_entries(1, 0);

/// How the generator program varies its frames (written by `netdemux gen`).
#[map(name = "NDX_GEN_CFG")]
pub static GEN_SETTINGS: Array<GenSettings> = Array::with_max_entries(1, 0);

/// Frames the generator program has sent on this CPU.
#[map(name = "NDX_GEN_SEQ")]
pub static GEN_SEQ: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's verdict counters.
pub struct Count(*mut Counters);

impl Count {
    /// This CPU's counters, or `None` if the map cannot be read (it always can: an array).
    #[inline(always)]
    pub fn this_cpu() -> Option<Count> {
        COUNTERS.get_ptr_mut(0).map(Count)
    }

    /// Adds one to `counter`.
    #[inline(always)]
    pub fn add(&self, counter: Counter) {
        // SAFETY: the pointer is this CPU's entry of a per-CPU array, valid for the whole run;
        // XDP programs are not preempted or migrated while they run, so nothing else writes it.
        // The index is a Counter discriminant, below Counter::COUNT, the array's length.
        unsafe { (*self.0).slots[counter as usize] += 1 };
    }
}
