//! Typed handles on the program's four maps, whether just loaded or reopened from their pins,
//! and the operations the CLI performs on them: bind, unbind, list, counter readout.

use std::{io, path::Path};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf,
    maps::{Array, Map, MapData, MapError, PerCpuArray, PerCpuHashMap, PerCpuValues, XskMap},
};
use netdemux_common::{BindKey, BindStats, Counter, Counters, StateInfo, map_names, port_slot};

use super::binding::Binding;

/// `BPF_NOEXIST`: create the entry only if it does not exist yet.
const BPF_NOEXIST: u64 = 1;

/// File names of the pins in a state directory.
pub mod pin_names {
    /// The binding table.
    pub const BINDS: &str = "binds";
    /// The verdict counters.
    pub const COUNTERS: &str = "counters";
    /// The XSKMAP.
    pub const XSKS: &str = "xsks";
    /// The attachment description.
    pub const INFO: &str = "info";
    /// Bindings per (protocol, port).
    pub const PORTS: &str = "ports";
    /// The XDP link that keeps the program attached.
    pub const LINK: &str = "link";
    /// Every map pin, in the order they are created.
    pub const MAPS: [&str; 5] = [BINDS, COUNTERS, XSKS, INFO, PORTS];
}

/// The maps of one loaded or pinned netdemux program.
pub struct DemuxMaps {
    /// Bound socket addresses -> per-CPU packet and byte counts.
    pub binds: PerCpuHashMap<MapData, BindKey, BindStats>,
    /// Per-CPU verdict counters (one entry).
    pub counters: PerCpuArray<MapData, Counters>,
    /// Bindings per (protocol, port), which the program checks before any hash lookup.
    pub ports: Array<MapData, u32>,
    /// AF_XDP socket per RX queue.
    pub xsks: XskMap<MapData>,
    /// The attachment description.
    pub info: Array<MapData, StateInfo>,
    /// Capacity of the binding table.
    pub max_bindings: u32,
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
        let mut take = |name: &str, file: &str| -> Result<Map> {
            let map = ebpf
                .take_map(name)
                .ok_or_else(|| anyhow!("the embedded program has no map {name}"))?;
            if let Some(dir) = pin_dir {
                map.pin(dir.join(file))
                    .with_context(|| format!("cannot pin map {file} in {}", dir.display()))?;
            }
            Ok(map)
        };
        let binds = take(map_names::BINDS, pin_names::BINDS)?;
        let counters = take(map_names::COUNTERS, pin_names::COUNTERS)?;
        let xsks = take(map_names::XSKS, pin_names::XSKS)?;
        let info = take(map_names::INFO, pin_names::INFO)?;
        let ports = take(map_names::PORTS, pin_names::PORTS)?;
        Self::from_maps(binds, counters, xsks, info, ports)
    }

    /// Reopens the maps pinned in `dir`.
    pub fn open_pinned(dir: &Path) -> Result<Self> {
        let open = |file: &str| -> Result<Map> {
            let path = dir.join(file);
            let data = MapData::from_pin(&path)
                .with_context(|| format!("cannot open the pinned map {}", path.display()))?;
            Map::from_map_data(data)
                .with_context(|| format!("{} is not a map netdemux can read", path.display()))
        };
        Self::from_maps(
            open(pin_names::BINDS)?,
            open(pin_names::COUNTERS)?,
            open(pin_names::XSKS)?,
            open(pin_names::INFO)?,
            open(pin_names::PORTS)?,
        )
    }

    fn from_maps(binds: Map, counters: Map, xsks: Map, info: Map, ports: Map) -> Result<Self> {
        let max_bindings = match &binds {
            Map::PerCpuHashMap(data) => data.info().map(|i| i.max_entries()).unwrap_or(0),
            _ => 0,
        };
        Ok(DemuxMaps {
            binds: typed(binds, pin_names::BINDS)?,
            counters: typed(counters, pin_names::COUNTERS)?,
            xsks: typed(xsks, pin_names::XSKS)?,
            info: typed(info, pin_names::INFO)?,
            ports: typed(ports, pin_names::PORTS)?,
            max_bindings,
        })
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
    /// The port count goes up before the binding appears and down after it is gone, so the
    /// program never skips the lookup of a binding that exists. Concurrent writers must be
    /// serialised by the caller (the CLI locks the state directory).
    pub fn bind(&mut self, binding: &Binding) -> Result<()> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        let zeros = PerCpuValues::try_from(vec![BindStats::default(); cpus])?;
        let slot = self.port_slot(binding)?;
        let on_port = self.port_count(slot)?;
        self.set_port_count(slot, on_port + 1)?;
        match self.binds.insert(binding.key(), zeros, BPF_NOEXIST) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.set_port_count(slot, on_port)?;
                match map_errno(&e) {
                    Some(libc::EEXIST) => {
                        bail!("{binding} is already bound (`netdemux list` shows the bindings)")
                    }
                    Some(libc::E2BIG) => bail!(
                        "cannot bind {binding}: the binding table is full ({} entries); unbind \
                         something, or detach and attach again with a larger --max-bindings",
                        self.max_bindings
                    ),
                    _ => Err(anyhow::Error::new(e).context(format!("cannot bind {binding}"))),
                }
            }
        }
    }

    /// Removes `binding`. Fails if it is not bound.
    pub fn unbind(&mut self, binding: &Binding) -> Result<()> {
        let slot = self.port_slot(binding)?;
        match self.binds.remove(&binding.key()) {
            Ok(()) => {}
            Err(e) if map_errno(&e) == Some(libc::ENOENT) => {
                bail!("{binding} is not bound (`netdemux list` shows the bindings)")
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("cannot unbind {binding}"))),
        }
        let on_port = self.port_count(slot)?;
        self.set_port_count(slot, on_port.saturating_sub(1))
    }

    fn port_slot(&self, binding: &Binding) -> Result<u32> {
        port_slot(binding.proto.number(), binding.addr.port())
            .ok_or_else(|| anyhow!("{binding}: no port slot for this protocol"))
    }

    /// How many bindings the port map records for a (protocol, port) slot.
    pub fn port_count(&self, slot: u32) -> Result<u32> {
        self.ports.get(&slot, 0).context("cannot read the port map")
    }

    fn set_port_count(&mut self, slot: u32, n: u32) -> Result<()> {
        self.ports
            .set(slot, n, 0)
            .context("cannot write the port map")
    }

    /// Every binding, sorted by protocol, then address.
    pub fn bindings(&self) -> Result<Vec<Binding>> {
        let mut out = Vec::new();
        for key in self.binds.keys() {
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
        let mut out = Vec::new();
        for binding in self.bindings()? {
            match self.binds.get(&binding.key(), 0) {
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
