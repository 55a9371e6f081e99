//! The `peerctl` command line client; see `peering_userspace::cli`.

fn main() {
    std::process::exit(peering_userspace::cli::main());
}
