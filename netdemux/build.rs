//! Builds the XDP program (`netdemux-ebpf`) with the nightly toolchain and bpf-linker, so that
//! `cargo build` alone yields a `netdemux` binary with the program embedded.
//! `cargo xtask setup` installs what this needs; `AYA_BUILD_SKIP=1` skips it (docs only).

fn main() -> anyhow::Result<()> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../netdemux-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "netdemux-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "building the XDP program failed: {e:#}\n\
             hint: run `cargo xtask setup` (nightly rust-src and bpf-linker are needed)"
        )
    })
}
