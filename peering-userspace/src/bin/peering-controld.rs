//! The control-plane daemon; see `peering_userspace::api::daemon`.

fn main() -> anyhow::Result<()> {
    peering_userspace::api::daemon::main()
}
