//! The `netdemux` command: see `netdemux --help`.

fn main() -> std::process::ExitCode {
    netdemux::cli::main()
}
