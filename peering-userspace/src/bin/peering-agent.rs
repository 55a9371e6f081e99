//! `peering-agent`: the gateway's dataplane agent. These subcommands load,
//! attach and program the XDP dataplane through its pinned maps; every
//! invocation reuses what earlier ones pinned, so forwarding never depends
//! on this process staying alive.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    path::PathBuf,
    process::ExitCode,
};

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand};
use ipnet::Ipv4Net;
use peering_common::EgressPort;
use peering_userspace::{
    agent,
    dataplane::{
        iface_info, upgrade, AttachMode, Attached, Dataplane, PortPathChoice, RouteTarget,
        DEFAULT_PIN_DIR,
    },
    dns::server::{DnsStats, DNS_STATS_FILE},
    gateway::{self, TunnelStats},
    out, report, sys,
};

#[derive(Parser)]
#[command(
    version,
    about = "peering gateway agent: load, attach and program the XDP dataplane"
)]
struct Cli {
    /// bpffs directory holding this gateway's pinned maps, program and links.
    #[arg(long, global = true, env = "PEERING_PIN_DIR", default_value = DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
    /// Run inside this network namespace (a name from `ip netns list`).
    #[arg(long, global = true, env = "PEERING_NETNS")]
    netns: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run as this region's agent: follow the region's view from the
    /// controllers and keep the dataplane in line with it, within a second
    /// of each change. With no controller reachable, forwarding and the
    /// tunnel go on with what the agent holds.
    Run {
        /// The region this gateway serves (the credential's region).
        #[arg(long, env = "PEERING_REGION")]
        region: String,
        /// Controller URLs, tried in turn (https://HOST:PORT; http:// only
        /// to a loopback address). Comma-separated or repeated.
        #[arg(
            long,
            env = "PEERING_CONTROLLER",
            value_delimiter = ',',
            required = true
        )]
        controller: Vec<String>,
        /// This gateway's credential (JSON written by `peering-controld
        /// create-gateway`, mode 0600).
        #[arg(long, env = "PEERING_CREDENTIAL")]
        credential: PathBuf,
        /// CA certificates (PEM) the controllers' certificates chain to.
        #[arg(long, env = "PEERING_CA_FILE")]
        ca_file: Option<PathBuf>,
        /// How often the kernel's neighbours are read, in milliseconds.
        #[arg(long, default_value_t = 200)]
        interval_ms: u64,
        #[arg(long, value_enum, default_value = "auto")]
        mode: AttachMode,
        /// Which program VPC ports run: auto puts veths on TC (tcx
        /// ingress, keeping GSO and checksum offload) and other ports on
        /// XDP.
        #[arg(long, value_enum, env = "PEERING_PORT_PATH", default_value = "auto")]
        port_path: PortPathChoice,
        /// Reconcile once and exit.
        #[arg(long)]
        once: bool,
        /// This gateway's underlay address (a.b.c.d or a.b.c.d:port; the
        /// port defaults to 51900). Enables the inter-region tunnel: it
        /// listens there and registers the address with the controllers.
        #[arg(long, value_parser = gateway::parse_endpoint)]
        underlay: Option<SocketAddrV4>,
        /// How tunnel datagrams move on the underlay: AF_XDP on the
        /// interface holding the underlay address (the UDP socket carries
        /// what AF_XDP cannot), or the UDP socket alone.
        #[arg(long, value_enum, default_value = "af-xdp")]
        underlay_io: gateway::UnderlayIo,
        /// Tunnel worker threads: worker i serves the AF_XDP queues q with
        /// q % N == i on every VPC port and the underlay, so give those
        /// interfaces at least N queues (about one worker per CPU).
        #[arg(long, env = "PEERING_WORKERS", default_value_t = 1,
              value_parser = clap::value_parser!(u32).range(1..=64))]
        workers: u32,
        /// Directory for the agent's state (tunnel and DNS counters).
        #[arg(long, env = "PEERING_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// The region's resolver (AmazonProvidedDNS) at each VPC's base + 2
        /// address (a /32 on the namespace's loopback); off removes them.
        #[arg(long, value_enum, env = "PEERING_DNS", default_value = "on")]
        dns: OnOff,
    },
    /// Show the resolver's counters from a running agent's state directory.
    DnsStats {
        #[arg(long, env = "PEERING_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Show the inter-region tunnel's counters (per peering, per remote
    /// gateway, drops by reason) from a running agent's state directory.
    TunnelStats {
        #[arg(long, env = "PEERING_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Load the XDP object and pin it (idempotent).
    Load,
    /// Attach the dataplane to a VPC-facing interface (XDP, or TC for a
    /// veth: see --port-path).
    Attach {
        #[arg(long)]
        iface: String,
        #[arg(long, value_enum, default_value = "auto")]
        mode: AttachMode,
        /// auto: TC (tcx ingress) for a veth, XDP otherwise.
        #[arg(long, value_enum, env = "PEERING_PORT_PATH", default_value = "auto")]
        port_path: PortPathChoice,
    },
    /// Switch every pinned attachment to this build's programs, each in one
    /// atomic step (BPF_LINK_UPDATE): no packet is lost. `run` and `attach`
    /// do this for the interfaces they handle.
    Upgrade {
        /// Load fresh instances of this build's programs even when they are
        /// pinned already (e.g. after a kernel upgrade).
        #[arg(long)]
        reload: bool,
    },
    /// Show the pinned attachments and the programs they run.
    Links {
        #[arg(long)]
        json: bool,
    },
    /// Detach the XDP program from an interface.
    Detach {
        #[arg(long)]
        iface: String,
    },
    /// Bind an interface (and VLAN) to a VPC subnet and its route table.
    #[command(subcommand)]
    Iface(IfaceCmd),
    /// The CIDR blocks of a VPC (sources are checked against them).
    #[command(subcommand)]
    VpcCidr(VpcCidrCmd),
    /// Where a VPC's subnet is reached from the gateway.
    #[command(subcommand)]
    Subnet(SubnetCmd),
    /// Routes of a route table.
    #[command(subcommand)]
    Route(RouteCmd),
    /// Hosts' MAC addresses on the gateway's ports.
    #[command(subcommand)]
    Neigh(NeighCmd),
    /// Show everything programmed.
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Show the verdict counters.
    Stats {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Args)]
struct IfaceSel {
    #[arg(long)]
    iface: String,
    /// VLAN id, 0 (the default) for untagged.
    #[arg(long, default_value_t = 0)]
    vlan: u16,
}

#[derive(Subcommand)]
enum IfaceCmd {
    Set {
        #[command(flatten)]
        sel: IfaceSel,
        #[arg(long)]
        vpc: u32,
        #[arg(long)]
        route_table: u32,
        /// The VPC router's address on this subnet.
        #[arg(long)]
        gateway_ip: Ipv4Addr,
        /// The subnet's prefix: sources outside it are dropped as spoofed.
        #[arg(long)]
        subnet: Ipv4Net,
    },
    Del {
        #[command(flatten)]
        sel: IfaceSel,
    },
}

#[derive(Subcommand)]
enum VpcCidrCmd {
    Add {
        #[arg(long)]
        vpc: u32,
        #[arg(long)]
        cidr: Ipv4Net,
    },
    Del {
        #[arg(long)]
        vpc: u32,
        #[arg(long)]
        cidr: Ipv4Net,
    },
}

#[derive(Subcommand)]
enum SubnetCmd {
    Add {
        #[arg(long)]
        vpc: u32,
        #[arg(long)]
        cidr: Ipv4Net,
        #[command(flatten)]
        sel: IfaceSel,
    },
    Del {
        #[arg(long)]
        vpc: u32,
        #[arg(long)]
        cidr: Ipv4Net,
    },
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct TargetArg {
    /// Intra-region peer VPC id.
    #[arg(long)]
    local_peer: Option<u32>,
    /// Inter-region peering id.
    #[arg(long)]
    remote_peer: Option<u32>,
    /// Drop matching packets.
    #[arg(long)]
    blackhole: bool,
}

impl TargetArg {
    fn target(&self) -> RouteTarget {
        match (self.local_peer, self.remote_peer) {
            (Some(peer_vpc), _) => RouteTarget::LocalPeer { peer_vpc },
            (_, Some(pcx)) => RouteTarget::RemotePeer { pcx },
            _ => RouteTarget::Blackhole,
        }
    }
}

#[derive(Subcommand)]
enum RouteCmd {
    /// Add or replace a route.
    Set {
        #[arg(long)]
        table: u32,
        #[arg(long)]
        dst: Ipv4Net,
        #[command(flatten)]
        target: TargetArg,
    },
    Del {
        #[arg(long)]
        table: u32,
        #[arg(long)]
        dst: Ipv4Net,
    },
}

#[derive(Subcommand)]
enum NeighCmd {
    Add {
        #[arg(long)]
        iface: String,
        #[arg(long)]
        ip: Ipv4Addr,
        #[arg(long, value_parser = parse_mac)]
        mac: [u8; 6],
    },
    Del {
        #[arg(long)]
        iface: String,
        #[arg(long)]
        ip: Ipv4Addr,
    },
}

fn parse_mac(s: &str) -> Result<[u8; 6]> {
    sys::parse_mac(s)
}

fn main() -> ExitCode {
    // Milliseconds: a restart's start-up steps take a few each.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    // Before entering --netns: refuse `ip netns exec` up front, naming the
    // namespace the caller is in.
    if !matches!(cli.cmd, Cmd::TunnelStats { .. } | Cmd::DnsStats { .. }) {
        sys::require_bpffs(&cli.pin_dir)?;
    }
    // The control threads start before --netns is entered: they keep the
    // namespace the agent was started in, where the controllers are.
    let link = match &cli.cmd {
        Cmd::Run {
            region,
            controller,
            credential,
            ca_file,
            underlay,
            ..
        } => Some(agent::remote::link(
            region,
            controller,
            credential,
            ca_file.as_deref(),
            *underlay,
        )?),
        _ => None,
    };
    if let Some(ns) = &cli.netns {
        sys::enter_netns(ns)?;
    }
    let pins = cli.pin_dir.as_path();
    match cli.cmd {
        Cmd::Run {
            region,
            interval_ms,
            mode,
            port_path,
            once,
            underlay,
            underlay_io,
            workers,
            state_dir,
            dns,
            ..
        } => {
            let cfg = agent::AgentConfig {
                region,
                pin_dir: pins.to_path_buf(),
                interval: std::time::Duration::from_millis(interval_ms),
                attach_mode: mode,
                port_path,
                once,
                underlay,
                underlay_io,
                workers,
                state_dir,
                dns: dns == OnOff::On,
            };
            agent::run(&cfg, link.expect("made above"))?;
        }
        Cmd::TunnelStats { state_dir, json } => {
            let stats = TunnelStats::read(&state_dir.join(agent::TUNNEL_STATS_FILE))?;
            out::print(&report::tunnel_stats(&stats, json))?;
        }
        Cmd::DnsStats { state_dir, json } => {
            let stats = DnsStats::read(&state_dir.join(DNS_STATS_FILE))?;
            out::print(&report::dns_stats(&stats, json))?;
        }
        Cmd::Load => {
            Dataplane::load(Some(pins))?;
            out::println(&format!(
                "dataplane loaded, pinned under {}",
                pins.display()
            ))?;
        }
        Cmd::Attach {
            iface,
            mode,
            port_path,
        } => {
            let mut dp = Dataplane::load(Some(pins))?;
            let path = port_path.resolve(sys::driver(&iface).ok().as_deref());
            let how = match dp.attach_port(&iface, path, mode)? {
                Attached::Native => "attached in native mode",
                Attached::Generic => "attached in generic mode",
                Attached::Tc => "attached at TC ingress (tcx)",
                Attached::Existing => "already attached; kept",
                Attached::Upgraded => "already attached; switched to this build's program",
            };
            out::println(&format!("{iface}: path {path}: {how}"))?;
        }
        Cmd::Upgrade { reload } => {
            let mut dp = if reload {
                Dataplane::reload(pins)?
            } else {
                Dataplane::load(Some(pins))?
            };
            for (ifindex, how) in dp.upgrade_links()? {
                println!("if{ifindex}: {how:?}");
            }
        }
        Cmd::Links { json } => {
            sys::require_root()?;
            let links = upgrade::links(pins)?;
            let programs = upgrade::pinned_program_ids(pins)?;
            print!("{}", report::links(&links, &programs, json));
        }
        Cmd::Detach { iface } => {
            Dataplane::detach(pins, &iface)?;
            out::println(&format!("{iface}: detached"))?;
        }
        cmd => edit_maps(pins, cmd)?,
    }
    Ok(())
}

/// Default state directory of the agent.
const DEFAULT_STATE_DIR: &str = "/run/peering";

fn edit_maps(pins: &std::path::Path, cmd: Cmd) -> Result<()> {
    let mut m = Dataplane::open_pinned(pins)?;
    match cmd {
        Cmd::Iface(IfaceCmd::Set {
            sel,
            vpc,
            route_table,
            gateway_ip,
            subnet,
        }) => {
            let info = iface_info(vpc, route_table, gateway_ip, subnet, 0);
            m.set_iface(sys::ifindex(&sel.iface)?, sel.vlan, info)?
        }
        Cmd::Iface(IfaceCmd::Del { sel }) => m.remove_iface(sys::ifindex(&sel.iface)?, sel.vlan)?,
        Cmd::VpcCidr(VpcCidrCmd::Add { vpc, cidr }) => m.add_vpc_cidr(vpc, cidr)?,
        Cmd::VpcCidr(VpcCidrCmd::Del { vpc, cidr }) => m.remove_vpc_cidr(vpc, cidr)?,
        Cmd::Subnet(SubnetCmd::Add { vpc, cidr, sel }) => {
            let port = EgressPort {
                ifindex: sys::ifindex(&sel.iface)?,
                vlan: sel.vlan,
                src_mac: sys::mac(&sel.iface)?,
            };
            m.set_subnet(vpc, cidr, port)?
        }
        Cmd::Subnet(SubnetCmd::Del { vpc, cidr }) => m.remove_subnet(vpc, cidr)?,
        Cmd::Route(RouteCmd::Set { table, dst, target }) => {
            m.set_route(table, dst, target.target())?;
        }
        Cmd::Route(RouteCmd::Del { table, dst }) => m
            .remove_route(table, dst)
            .with_context(|| format!("no route {dst} in table {table}"))?,
        Cmd::Neigh(NeighCmd::Add { iface, ip, mac }) => {
            m.set_neighbour(sys::ifindex(&iface)?, ip, mac)?
        }
        Cmd::Neigh(NeighCmd::Del { iface, ip }) => m.remove_neighbour(sys::ifindex(&iface)?, ip)?,
        Cmd::Show { json } => {
            let ports: Vec<_> = Dataplane::port_paths(pins)?
                .into_iter()
                .map(|(i, path)| (i, sys::ifname(i).unwrap_or_default(), path))
                .collect();
            out::print(&report::snapshot(&m.snapshot()?, &ports, json))?
        }
        Cmd::Stats { json } => out::print(&report::stats(&m.stats()?, json))?,
        Cmd::Run { .. }
        | Cmd::TunnelStats { .. }
        | Cmd::DnsStats { .. }
        | Cmd::Load
        | Cmd::Attach { .. }
        | Cmd::Upgrade { .. }
        | Cmd::Links { .. }
        | Cmd::Detach { .. } => {
            unreachable!("handled by run")
        }
    }
    Ok(())
}
