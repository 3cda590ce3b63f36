//! Typed handles on the program's pinned maps — the two binding sets and their port entries,
//! the bindings' counters by counter index with the index allocator, the
//! active-set selector, the verdict counters, the XSKMAP and the state description: eleven pins
//! with the link ([`pin_names`]) — whether just loaded or reopened from their pins, and the
//! operations the CLI performs on them: bind, unbind, replace, list, counter readout.
//!
//! Each binding owns a counter index for as long as it is bound (kept across a replacement of
//! the whole set, so its counters carry over exactly); indices come from a stack of those given
//! back, else from a never-used high-water mark, so handing one out costs two syscalls at most.

use std::{io, path::Path};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf,
    maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray, PerCpuValues, Stack, XskMap},
};
use netdemux_common::{
    BindKey, BindStats, Counter, Counters, PortEntry, StateInfo, map_names, port_slot, slot_family,
};

use super::binding::Binding;

/// `BPF_NOEXIST`: create the entry only if it does not exist yet.
const BPF_NOEXIST: u64 = 1;

/// File names of the pins in a state directory.
pub mod pin_names {
    /// Binding set 0.
    pub const BINDS: &str = "binds";
    /// Binding set 1.
    pub const BINDS1: &str = "binds1";
    /// Which binding set is in use.
    pub const ACTIVE: &str = "active";
    /// The verdict counters.
    pub const COUNTERS: &str = "counters";
    /// The XSKMAP.
    pub const XSKS: &str = "xsks";
    /// The attachment description.
    pub const INFO: &str = "info";
    /// Bindings per (protocol, port), set 0.
    pub const PORTS: &str = "ports";
    /// Bindings per (protocol, port), set 1.
    pub const PORTS1: &str = "ports1";
    /// The bindings' counters by counter index.
    pub const STATS: &str = "stats";
    /// Counter indices given back.
    pub const FREE: &str = "free";
    /// The lowest counter index never handed out.
    pub const NEXT: &str = "next";
    /// The XDP link that keeps the program attached.
    pub const LINK: &str = "link";
}

/// Every pinned map: its name in the eBPF object and its pin's file name.
pub const PINNED_MAPS: [(&str, &str); 11] = [
    (map_names::BINDS, pin_names::BINDS),
    (map_names::BINDS1, pin_names::BINDS1),
    (map_names::ACTIVE, pin_names::ACTIVE),
    (map_names::COUNTERS, pin_names::COUNTERS),
    (map_names::XSKS, pin_names::XSKS),
    (map_names::INFO, pin_names::INFO),
    (map_names::PORTS, pin_names::PORTS),
    (map_names::PORTS1, pin_names::PORTS1),
    (map_names::STATS, pin_names::STATS),
    (map_names::FREE, pin_names::FREE),
    (map_names::NEXT, pin_names::NEXT),
];

/// The refusal of a binding that exists.
fn already_bound(binding: &Binding) -> anyhow::Error {
    anyhow!("{binding} is already bound (`netdemux list` shows the bindings)")
}

/// The maps of one loaded or pinned netdemux program.
pub struct DemuxMaps {
    /// The two binding sets: bound socket addresses -> counter index.
    pub binds: [HashMap<MapData, BindKey, u32>; 2],
    /// The bindings of each (protocol, family, port) of each set, which the program reads
    /// before anything else.
    pub ports: [Array<MapData, PortEntry>; 2],
    /// Per-CPU packet and byte counts by counter index.
    pub stats: PerCpuArray<MapData, BindStats>,
    /// Counter indices given back.
    free: Stack<MapData, u32>,
    /// Entry 0: the lowest counter index never handed out.
    next: Array<MapData, u32>,
    /// Which set the program uses (entry 0: 0 or 1).
    pub active: Array<MapData, u32>,
    /// Per-CPU verdict counters (one entry).
    pub counters: PerCpuArray<MapData, Counters>,
    /// AF_XDP socket per RX queue.
    pub xsks: XskMap<MapData>,
    /// The attachment description.
    pub info: Array<MapData, StateInfo>,
    /// Capacity of each binding set.
    pub max_bindings: u32,
}

/// What [`DemuxMaps::replace`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Replaced {
    /// Bindings in both the old and the new set (their counters carried over, exactly).
    pub kept: usize,
    /// Bindings only in the new set.
    pub added: usize,
    /// Bindings only in the old set.
    pub removed: usize,
}

/// Summed verdict counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verdicts {
    /// One slot per [`Counter`], summed over CPUs.
    pub slots: [u64; Counter::COUNT as usize],
}

impl Verdicts {
    /// The value of one counter.
    pub fn get(&self, counter: Counter) -> u64 {
        self.slots[counter as usize]
    }

    /// Frames the program ran on: each is counted in exactly one slot.
    pub fn seen(&self) -> u64 {
        self.slots.iter().sum()
    }

    /// Frames passed to the kernel for any reason (the sum of the pass reasons).
    pub fn passed(&self) -> u64 {
        Counter::PASS_REASONS
            .iter()
            .map(|(c, _)| self.get(*c))
            .sum()
    }

    /// Slot-wise difference `self - earlier` (counters only grow).
    pub fn since(&self, earlier: &Verdicts) -> Verdicts {
        let mut out = Verdicts::default();
        for (i, slot) in out.slots.iter_mut().enumerate() {
            *slot = self.slots[i].wrapping_sub(earlier.slots[i]);
        }
        out
    }
}

/// The errno behind a map syscall failure, if that is what it was.
pub fn map_errno(err: &MapError) -> Option<i32> {
    match err {
        MapError::SyscallError(e) => e.io_error.raw_os_error(),
        _ => None,
    }
}

fn typed<T>(map: Map, name: &str) -> Result<T>
where
    T: TryFrom<Map, Error = MapError>,
{
    T::try_from(map).with_context(|| format!("map {name} has an unexpected type or layout"))
}

impl DemuxMaps {
    /// Takes the maps out of a freshly loaded object, pinning each into `pin_dir` when given.
    pub fn take(ebpf: &mut Ebpf, pin_dir: Option<&Path>) -> Result<Self> {
        let mut maps = Vec::new();
        for (name, file) in PINNED_MAPS {
            let map = ebpf
                .take_map(name)
                .ok_or_else(|| anyhow!("the embedded program has no map {name}"))?;
            if let Some(dir) = pin_dir {
                map.pin(dir.join(file))
                    .with_context(|| format!("cannot pin map {file} in {}", dir.display()))?;
            }
            maps.push(map);
        }
        Self::from_maps(maps)
    }

    /// Reopens the maps pinned in `dir`.
    pub fn open_pinned(dir: &Path) -> Result<Self> {
        let mut maps = Vec::new();
        for (_, file) in PINNED_MAPS {
            let path = dir.join(file);
            let data = MapData::from_pin(&path)
                .with_context(|| format!("cannot open the pinned map {}", path.display()))?;
            maps.push(
                Map::from_map_data(data).with_context(|| {
                    format!("{} is not a map netdemux can read", path.display())
                })?,
            );
        }
        Self::from_maps(maps)
    }

    /// Builds the handles from maps in the order of [`PINNED_MAPS`].
    fn from_maps(maps: Vec<Map>) -> Result<Self> {
        let max_bindings = match &maps[0] {
            Map::HashMap(data) => data.info().map(|i| i.max_entries()).unwrap_or(0),
            _ => 0,
        };
        let mut it = maps.into_iter().zip(PINNED_MAPS.map(|(_, f)| f));
        let mut next = || it.next().context("a map is missing");
        let (b0, b1, active, counters, xsks, info, p0, p1) = (
            next()?,
            next()?,
            next()?,
            next()?,
            next()?,
            next()?,
            next()?,
            next()?,
        );
        let (stats, free, high) = (next()?, next()?, next()?);
        Ok(DemuxMaps {
            binds: [typed(b0.0, b0.1)?, typed(b1.0, b1.1)?],
            active: typed(active.0, active.1)?,
            counters: typed(counters.0, counters.1)?,
            xsks: typed(xsks.0, xsks.1)?,
            info: typed(info.0, info.1)?,
            ports: [typed(p0.0, p0.1)?, typed(p1.0, p1.1)?],
            stats: typed(stats.0, stats.1)?,
            free: typed(free.0, free.1)?,
            next: typed(high.0, high.1)?,
            max_bindings,
        })
    }

    /// The binding set the program uses.
    pub fn active_set(&self) -> Result<usize> {
        let set = self
            .active
            .get(&0, 0)
            .context("cannot read the active binding set")?;
        Ok(if set == 1 { 1 } else { 0 })
    }

    /// The attachment description (all zeros if never written).
    pub fn read_info(&self) -> Result<StateInfo> {
        self.info.get(&0, 0).context("cannot read the info map")
    }

    /// Records the attachment description.
    pub fn write_info(&mut self, info: &StateInfo) -> Result<()> {
        self.info
            .set(0, info, 0)
            .context("cannot write the info map")
    }

    /// Adds `binding`. Fails without changing anything if it is already bound or the table is full.
    ///
    /// The binding's counters are in place before it enters the set, and the port entry
    /// changes last, so the program never finds a binding without them. Concurrent
    /// writers must be serialised by the caller (the CLI locks the state directory).
    pub fn bind(&mut self, binding: &Binding) -> Result<()> {
        let set = self.active_set()?;
        let key = binding.key();
        let slot = self.port_slot(binding)?;
        if self.binds[set].get(&key, 0).is_ok() {
            return Err(already_bound(binding));
        }
        let index = self.take_index(binding)?;
        if let Err(e) = self.bind_at(set, slot, binding, index) {
            let _ = self.give_index(index);
            return Err(e);
        }
        Ok(())
    }

    fn bind_at(&mut self, set: usize, slot: u32, binding: &Binding, index: u32) -> Result<()> {
        let key = binding.key();
        self.prepare_index(index)?;
        if let Err(e) = self.binds[set].insert(key, index, BPF_NOEXIST) {
            return match map_errno(&e) {
                Some(libc::EEXIST) => Err(already_bound(binding)),
                Some(libc::E2BIG) => bail!(
                    "cannot bind {binding}: the binding table is full ({} entries); unbind \
                     something, or detach and attach again with a larger --max-bindings",
                    self.max_bindings
                ),
                _ => Err(anyhow::Error::new(e).context(format!("cannot bind {binding}"))),
            };
        }
        let old = self.port_entry_in(set, slot)?;
        let new = old.with(index, key.addr, key.family);
        if let Err(e) = self.change_port_entry(set, slot, old, new) {
            // Whatever step failed, the entry holds `old`, or one on the way with the new
            // binding's lane empty: back to `old` the same careful way, from `new` without the
            // binding (its lane emptied, the new address left in it, so the lane stays empty
            // until its address is `old`'s again).
            let _ = self.change_port_entry(set, slot, new.without(index), old);
            let _ = self.binds[set].remove(&key);
            return Err(e);
        }
        Ok(())
    }

    /// Removes `binding`. Fails if it is not bound.
    ///
    /// The port entry changes first, so the program stops matching the binding before it
    /// leaves the set; its counter index is given back last.
    pub fn unbind(&mut self, binding: &Binding) -> Result<()> {
        let set = self.active_set()?;
        let slot = self.port_slot(binding)?;
        let key = binding.key();
        let index = match self.binds[set].get(&key, 0) {
            Ok(i) => i,
            Err(MapError::KeyNotFound) => {
                bail!("{binding} is not bound (`netdemux list` shows the bindings)")
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("cannot unbind {binding}"))),
        };
        let old = self.port_entry_in(set, slot)?;
        self.change_port_entry(set, slot, old, old.without(index))?;
        match self.binds[set].remove(&key) {
            Ok(()) => {}
            Err(e) if map_errno(&e) == Some(libc::ENOENT) => {}
            Err(e) => return Err(anyhow::Error::new(e).context(format!("cannot unbind {binding}"))),
        }
        self.give_index(index)
    }

    fn port_slot(&self, binding: &Binding) -> Result<u32> {
        let key = binding.key();
        port_slot(key.proto, key.port(), key.family)
            .ok_or_else(|| anyhow!("{binding}: no port slot for this protocol"))
    }

    /// How many bindings the active set's port entry records for a (protocol, port, family)
    /// slot.
    pub fn port_count(&self, slot: u32) -> Result<u32> {
        Ok(self.port_entry(slot)?.count)
    }

    /// The active set's port entry of a (protocol, port, family) slot.
    pub fn port_entry(&self, slot: u32) -> Result<PortEntry> {
        self.port_entry_in(self.active_set()?, slot)
    }

    fn port_entry_in(&self, set: usize, slot: u32) -> Result<PortEntry> {
        self.ports[set]
            .get(&slot, 0)
            .context("cannot read the port map")
    }

    fn set_port_entry(&mut self, set: usize, slot: u32, entry: PortEntry) -> Result<()> {
        self.ports[set]
            .set(slot, entry, 0)
            .context("cannot write the port map")
    }

    /// Changes a port entry of a set the program may be reading from `old` to `new`, through
    /// [`PortEntry::steps`]: one syscall, or two or three when the direct match changes.
    fn change_port_entry(
        &mut self,
        set: usize,
        slot: u32,
        old: PortEntry,
        new: PortEntry,
    ) -> Result<()> {
        for entry in old.steps(new, slot_family(slot)) {
            self.set_port_entry(set, slot, entry)?;
        }
        Ok(())
    }

    /// A free counter index: one given back, else the next never used.
    fn take_index(&mut self, binding: &Binding) -> Result<u32> {
        match self.free.pop(0) {
            Ok(i) => return Ok(i),
            Err(MapError::ElementNotFound) => {}
            Err(e) => return Err(anyhow::Error::new(e).context("cannot read the free counters")),
        }
        let next = self
            .next
            .get(&0, 0)
            .context("cannot read the counter high-water mark")?;
        if next >= self.stats.len() {
            bail!(
                "cannot bind {binding}: every binding counter is in use ({}); unbind \
                 something, or detach and attach again with a larger --max-bindings",
                self.stats.len()
            );
        }
        self.next
            .set(0, next + 1, 0)
            .context("cannot write the counter high-water mark")?;
        Ok(next)
    }

    /// Gives a counter index back.
    fn give_index(&mut self, index: u32) -> Result<()> {
        self.free
            .push(index, 0)
            .context("cannot give a binding counter back")
    }

    /// Zeroes the counters of `index`.
    fn prepare_index(&mut self, index: u32) -> Result<()> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        let zeros = PerCpuValues::try_from(vec![BindStats::default(); cpus])?;
        self.stats
            .set(index, zeros, 0)
            .context("cannot reset a binding's counters")
    }

    /// Replaces the whole binding set with `bindings`, atomically for the data path: the set not
    /// in use is emptied and filled (bindings kept from the current set keep their counter
    /// index, so their counters carry over exactly), then one word switches the program over,
    /// and the counter indices of the bindings that went are given back. Fails before the switch
    /// — changing nothing the program sees — if the new set does not fit. Concurrent writers
    /// must be serialised by the caller (the CLI locks the state directory).
    pub fn replace(&mut self, bindings: &[Binding]) -> Result<Replaced> {
        let cur = self.active_set()?;
        let next = 1 - cur;
        // Empty the idle set and its port entries (its counter indices are either the current
        // set's too or were given back when it was switched away from).
        let stale: Vec<BindKey> = self.binds[next].keys().collect::<Result<_, _>>()?;
        for key in &stale {
            if let Some(slot) = port_slot(key.proto, key.port(), key.family) {
                self.set_port_entry(next, slot, PortEntry::EMPTY)?;
            }
            match self.binds[next].remove(key) {
                Ok(()) => {}
                Err(e) if map_errno(&e) == Some(libc::ENOENT) => {}
                Err(e) => {
                    return Err(anyhow::Error::new(e).context("cannot empty the idle binding set"));
                }
            }
        }
        let mut wanted: Vec<Binding> = bindings.to_vec();
        wanted.sort();
        wanted.dedup();
        if wanted.len() > self.max_bindings as usize {
            bail!(
                "{} bindings do not fit the binding table ({} entries): attach again with a \
                 larger --max-bindings",
                wanted.len(),
                self.max_bindings
            );
        }
        let mut taken = Vec::new();
        let filled = self.fill_idle(next, cur, &wanted, &mut taken);
        let kept = match filled {
            Ok(kept) => kept,
            Err(e) => {
                for i in taken {
                    let _ = self.give_index(i);
                }
                return Err(e);
            }
        };
        // The switch: one word.
        self.active
            .set(0, next as u32, 0)
            .context("cannot switch the active binding set")?;
        // The bindings that went give their counter indices back.
        let wanted_keys: std::collections::HashSet<BindKey> =
            wanted.iter().map(|b| b.key()).collect();
        let mut removed = 0;
        let old: Vec<(BindKey, u32)> = self.binds[cur].iter().collect::<Result<_, _>>()?;
        for (key, index) in old {
            if !wanted_keys.contains(&key) {
                self.give_index(index)?;
                removed += 1;
            }
        }
        Ok(Replaced {
            kept,
            added: wanted.len() - kept,
            removed,
        })
    }

    /// Fills the idle set `next` with `wanted` (sorted, unique): bindings of the current set
    /// `cur` keep their counter index, new ones take one (recorded in `taken`). Returns how
    /// many were kept.
    fn fill_idle(
        &mut self,
        next: usize,
        cur: usize,
        wanted: &[Binding],
        taken: &mut Vec<u32>,
    ) -> Result<usize> {
        let mut kept = 0;
        let mut ports: std::collections::HashMap<u32, PortEntry> = std::collections::HashMap::new();
        for b in wanted {
            let key = b.key();
            let index = match self.binds[cur].get(&key, 0) {
                Ok(i) => {
                    kept += 1;
                    i
                }
                Err(_) => {
                    let i = self.take_index(b)?;
                    taken.push(i);
                    self.prepare_index(i)?;
                    i
                }
            };
            self.binds[next]
                .insert(key, index, 0)
                .with_context(|| format!("cannot add {b} to the idle binding set"))?;
            let e = ports.entry(self.port_slot(b)?).or_insert(PortEntry::EMPTY);
            *e = e.with(index, key.addr, key.family);
        }
        for (slot, entry) in ports {
            self.set_port_entry(next, slot, entry)?;
        }
        Ok(kept)
    }

    /// Every binding, sorted by protocol, then address.
    pub fn bindings(&self) -> Result<Vec<Binding>> {
        let set = self.active_set()?;
        let mut out = Vec::new();
        for key in self.binds[set].keys() {
            let key = key.context("cannot walk the binding table")?;
            if let Some(b) = Binding::from_key(&key) {
                out.push(b);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every binding with its packet and byte counts summed over CPUs, sorted as [`Self::bindings`].
    /// A binding removed while this walks the table is left out.
    pub fn binding_stats(&self) -> Result<Vec<(Binding, BindStats)>> {
        let set = self.active_set()?;
        let mut out = Vec::new();
        for binding in self.bindings()? {
            let index = match self.binds[set].get(&binding.key(), 0) {
                Ok(i) => i,
                Err(MapError::KeyNotFound) => continue,
                Err(e) => {
                    return Err(anyhow::Error::new(e).context("cannot read the binding table"));
                }
            };
            match self.stats.get(&index, 0) {
                Ok(per_cpu) => {
                    let sum = per_cpu
                        .iter()
                        .fold(BindStats::default(), |acc, s| BindStats {
                            packets: acc.packets + s.packets,
                            bytes: acc.bytes + s.bytes,
                        });
                    out.push((binding, sum));
                }
                Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(anyhow::Error::new(e).context("cannot read binding counters")),
            }
        }
        Ok(out)
    }

    /// The verdict counters summed over CPUs.
    pub fn verdicts(&self) -> Result<Verdicts> {
        let per_cpu = self
            .counters
            .get(&0, 0)
            .context("cannot read the verdict counters")?;
        let mut v = Verdicts::default();
        for cpu in per_cpu.iter() {
            for (sum, x) in v.slots.iter_mut().zip(cpu.slots) {
                *sum += x;
            }
        }
        Ok(v)
    }
}

/// True when `err` (or its cause) is the OS error `errno`.
pub fn is_errno(err: &anyhow::Error, errno: i32) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(errno))
            || e.downcast_ref::<MapError>()
                .is_some_and(|m| map_errno(m) == Some(errno))
    })
}

#[cfg(test)]
mod tests {
    use netdemux_common::{FAMILY_V4, FAMILY_V6, LANES, PortEntry};

    /// A lane's address as a key holds it: an IPv4 slot's lane `i` is word `i` of the entry.
    fn lane_addr(e: &PortEntry, lane: usize, family: u8) -> [u32; 4] {
        if family == FAMILY_V4 {
            [e.addr[lane], 0, 0, 0]
        } else {
            e.addr
        }
    }

    /// Every (index, address) a reader can assemble for `lane` of a `family` slot while `b` is
    /// written over `a`: the index byte by byte, the lane's address word by word.
    fn lane_reads(a: PortEntry, b: PortEntry, lane: usize, family: u8) -> Vec<(u32, [u32; 4])> {
        let words: Vec<usize> = if family == FAMILY_V4 {
            vec![lane]
        } else {
            (0..4).collect()
        };
        (0..1u32 << (4 + words.len()))
            .map(|bits| {
                let pick = |i: usize| bits >> i & 1 == 1;
                let (ia, ib) = (a.index[lane].to_ne_bytes(), b.index[lane].to_ne_bytes());
                let index =
                    u32::from_ne_bytes(core::array::from_fn(
                        |i| {
                            if pick(i) { ib[i] } else { ia[i] }
                        },
                    ));
                let mut mixed = a;
                for (n, &w) in words.iter().enumerate() {
                    if pick(4 + n) {
                        mixed.addr[w] = b.addr[w];
                    }
                }
                (index, lane_addr(&mixed, lane, family))
            })
            .collect()
    }

    /// The addresses of an entry's lanes that hold a binding.
    fn direct(e: PortEntry, family: u8) -> Vec<[u32; 4]> {
        (0..PortEntry::lanes(family))
            .filter(|&l| e.index[l] != 0)
            .map(|l| lane_addr(&e, l, family))
            .collect()
    }

    /// The reads during a change from `old` to `new` written as `writes` that would take a
    /// lane's match against an address that is no lane's binding's on either side.
    fn bad_reads(
        old: PortEntry,
        new: PortEntry,
        writes: &[PortEntry],
        family: u8,
    ) -> Vec<(u32, [u32; 4])> {
        let mut allowed = direct(old, family);
        allowed.extend(direct(new, family));
        let mut bad = Vec::new();
        let mut prev = old;
        for &w in writes {
            for lane in 0..PortEntry::lanes(family) {
                bad.extend(
                    lane_reads(prev, w, lane, family)
                        .into_iter()
                        .filter(|(index, addr)| *index != 0 && !allowed.contains(addr)),
                );
            }
            prev = w;
        }
        bad
    }

    /// Entries of a `family` slot: empty, one to five bindings (the fifth IPv4 one, and an
    /// IPv6 slot's second, without a lane), lanes emptied by unbinding, a wildcard.
    fn entries(family: u8) -> Vec<PortEntry> {
        let addrs: [[u32; 4]; 5] = if family == FAMILY_V4 {
            [
                [0x0200_12c6, 0, 0, 0],
                [0x0300_12c6, 0, 0, 0],
                [0x0400_12c6, 0, 0, 0],
                [0, 0, 0, 0],
                [0x0600_12c6, 0, 0, 0],
            ]
        } else {
            // IPv6 addresses that differ in more than one word.
            [
                [0xb80d_0120, 0, 1, 0x0200_0000],
                [0xb80d_0120, 0, 2, 0x0300_0000],
                [0xb80d_0120, 0, 3, 0x0400_0000],
                [0, 0, 0, 0],
                [0xb80d_0120, 0, 5, 0x0600_0000],
            ]
        };
        let mut out = vec![PortEntry::EMPTY];
        for start in 0..2 {
            let mut e = PortEntry::EMPTY;
            for (i, &a) in addrs.iter().enumerate().skip(start) {
                e = e.with(5 + i as u32, a, family);
                out.push(e);
            }
            out.push(e.without(5 + start as u32));
            out.push(e.without(6).without(8));
        }
        out.push(PortEntry::EMPTY.with(7, addrs[1], family));
        out.push(PortEntry::EMPTY.with(5, addrs[1], family));
        out
    }

    /// The program reads a port entry field by field while the CLI rewrites it (and the
    /// kernel's copy of a map value is not atomic either): a lane's match must never be taken
    /// against an address no lane's binding has, or a frame would go to a socket not bound to
    /// it. (A split index only names the counter: `PortEntry`'s documentation says so.)
    #[test]
    fn a_port_entry_change_never_matches_an_address_nobody_bound() {
        for family in [FAMILY_V4, FAMILY_V6] {
            let entries = entries(family);
            for &old in &entries {
                for &new in &entries {
                    let writes: Vec<PortEntry> = old.steps(new, family).collect();
                    assert_eq!(writes.last(), Some(&new), "{old:?} -> {new:?}");
                    assert!(writes.len() <= 3);
                    let bad = bad_reads(old, new, &writes, family);
                    assert!(bad.is_empty(), "{old:?} -> {new:?}: {:?}", bad[0]);
                }
            }
        }
        // Written in one step, the same changes can be read wrong: what the steps are for.
        let (a, b) = ([0x0200_12c6, 0, 0, 0], [0x0300_12c6, 0, 0, 0]);
        let (a6, b6) = (
            [0xb80d_0120, 0, 1, 0x0200_0000],
            [0xb80d_0120, 0, 2, 0x0300_0000],
        );
        let one = |index, addr, family| PortEntry::EMPTY.with(index, addr, family);
        let bad = |old: PortEntry, new: PortEntry, family| {
            !bad_reads(old, new, &[new], family).is_empty()
        };
        assert!(bad(PortEntry::EMPTY, one(7, b, FAMILY_V4), FAMILY_V4));
        assert!(bad(one(5, a6, FAMILY_V6), one(7, b6, FAMILY_V6), FAMILY_V6));
        assert!(bad(one(5, a, FAMILY_V4), PortEntry::EMPTY, FAMILY_V4));
        // A lane emptied and taken again by another address.
        let two = one(5, a, FAMILY_V4).with(6, b, FAMILY_V4);
        let retaken = two.without(5).with(9, [0x0700_12c6, 0, 0, 0], FAMILY_V4);
        assert!(bad(two.without(5), retaken, FAMILY_V4));
    }

    #[test]
    fn ipv4_bindings_on_a_port_fill_its_lanes_then_the_hash() {
        let addr = |host: u32| [0x0000_12c6 | host << 24, 0, 0, 0];
        let mut e = PortEntry::EMPTY;
        for i in 0..LANES as u32 {
            e = e.with(10 + i, addr(2 + i), FAMILY_V4);
            assert_eq!((e.count, e.hashed), (i + 1, 0));
            assert_eq!(e.lane_of(10 + i), Some(i as usize));
            assert_eq!(e.lane(i as usize), Some(10 + i));
            assert_eq!(e.addr[i as usize], addr(2 + i)[0]);
        }
        // A fifth binding has no lane: the port is hashed.
        let full = e.with(20, addr(9), FAMILY_V4);
        assert_eq!((full.count, full.hashed, full.lane_of(20)), (5, 1, None));
        assert_eq!((full.index, full.addr), (e.index, e.addr));
        // A lane's binding leaves: its lane is empty and the fifth stays hashed.
        let left = full.without(11);
        assert_eq!((left.count, left.hashed, left.lane_of(11)), (4, 1, None));
        // The binding without a lane leaves: every one left has a lane, no hash lookup.
        let back = left.without(20);
        assert_eq!((back.count, back.hashed), (3, 0));
        // A new binding takes the free lane; the address goes in before the index.
        let again = back.with(30, addr(7), FAMILY_V4);
        assert_eq!(again.lane_of(30), Some(1));
        assert_eq!(back.steps(again, FAMILY_V4).count(), 2);
        // Emptying a lane is one write: its address stays, unread.
        assert_eq!(again.steps(again.without(30), FAMILY_V4).count(), 1);
        // The last binding leaves nothing.
        let one = PortEntry::EMPTY.with(5, addr(2), FAMILY_V4);
        assert_eq!(one.without(5), PortEntry::EMPTY);
    }

    #[test]
    fn an_ipv6_port_has_one_lane() {
        let (a6, b6) = ([0xb80d_0120, 0, 0, 1], [0xb80d_0120, 0, 0, 2]);
        let first = PortEntry::EMPTY.with(5, a6, FAMILY_V6);
        assert_eq!(
            (first.count, first.hashed, first.lane(0), first.addr),
            (1, 0, Some(5), a6)
        );
        let second = first.with(9, b6, FAMILY_V6);
        assert_eq!(
            (second.count, second.hashed, second.lane_of(9)),
            (2, 1, None)
        );
        // The second's lane-less binding changes the entry in one write.
        assert_eq!(first.steps(second, FAMILY_V6).count(), 1);
        assert_eq!(second.index[1..], [0; LANES - 1]);
    }
}
