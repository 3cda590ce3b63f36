//! The XDP program embedded in this binary, and loading it into the kernel.

use anyhow::{Context as _, Result, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    programs::{ProgramError, Xdp},
};
use netdemux_common::{map_names, program_names};

/// The eBPF object built by `build.rs` from `netdemux-ebpf`.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netdemux-xdp"));

/// FNV-1a hash of [`OBJECT`]: tells whether pinned state was made by this very program.
pub fn object_hash() -> u64 {
    OBJECT.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Parses the object and creates its maps, sizing the binding table for `max_bindings` entries.
/// No program is loaded yet: see [`load_program`].
pub fn open(max_bindings: u32) -> Result<Ebpf> {
    open_bytes(OBJECT, max_bindings)
}

/// [`open`] of another build of the object (`bytes`, as `build.rs` writes it): the benchmarks
/// compare one against the other.
pub fn open_bytes(bytes: &[u8], max_bindings: u32) -> Result<Ebpf> {
    sized(&mut EbpfLoader::new(), max_bindings)
        .load(bytes)
        .context("cannot load the netdemux eBPF object (maps could not be created)")
}

/// Sizes the maps that grow with the binding table for `max_bindings` bindings: each set, and
/// twice that in counter indices (a set is filled while the other still counts).
pub fn sized<'a, 'b>(loader: &'a mut EbpfLoader<'b>, max_bindings: u32) -> &'a mut EbpfLoader<'b> {
    let indices = max_bindings.saturating_mul(2);
    loader
        .map_max_entries(map_names::BINDS, max_bindings)
        .map_max_entries(map_names::BINDS1, max_bindings)
        .map_max_entries(map_names::STATS, indices)
        .map_max_entries(map_names::FREE, indices)
}

/// Loads (verifies) one XDP program of the object and returns it.
pub fn load_program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    let program: &mut Xdp = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("the embedded object has no program {name}"))?
        .try_into()
        .with_context(|| format!("{name} is not an XDP program"))?;
    program.load().map_err(|e| match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => anyhow!(
            "the kernel refused the XDP program {name} ({io_error}); verifier log:\n{verifier_log}"
        ),
        other => anyhow::Error::new(other).context(format!("cannot load XDP program {name}")),
    })?;
    Ok(program)
}

/// Loads the demultiplexer.
pub fn load_demux(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    load_program(ebpf, program_names::DEMUX)
}
