//! Human and JSON renderings of dataplane state and counters.

use std::fmt::Write as _;

use peering_common::{Counter, Stat};
use serde_json::json;

use crate::{
    dataplane::{upgrade::LinkState, LinkKind, PortPath, RouteTarget, Snapshot},
    sys::format_mac,
};

pub fn stats(stats: &[(Stat, Counter)], as_json: bool) -> String {
    if as_json {
        let obj: serde_json::Map<String, serde_json::Value> = stats
            .iter()
            .map(|(s, c)| {
                let v = json!({"packets": c.packets, "bytes": c.bytes});
                (s.label().to_string(), v)
            })
            .collect();
        return format!("{}\n", serde_json::Value::Object(obj));
    }
    let mut out = format!("{:<30} {:>14} {:>16}\n", "counter", "packets", "bytes");
    for (s, c) in stats {
        let _ = writeln!(out, "{:<30} {:>14} {:>16}", s.label(), c.packets, c.bytes);
    }
    out
}

/// Pinned attachments and this build's pinned programs.
pub fn links(links: &[LinkState], programs: &[(String, u32)], as_json: bool) -> String {
    if as_json {
        let links: Vec<_> = links
            .iter()
            .map(|l| {
                json!({"ifindex": l.ifindex, "kind": l.kind, "link_id": l.link_id,
                       "prog_id": l.prog_id, "prog_name": l.prog_name})
            })
            .collect();
        let programs: Vec<_> = programs
            .iter()
            .map(|(pin, id)| json!({"pin": pin, "prog_id": id}))
            .collect();
        return format!("{}\n", json!({"links": links, "programs": programs}));
    }
    let mut out = String::new();
    for (pin, id) in programs {
        let _ = writeln!(out, "program {pin} id {id}");
    }
    for l in links {
        let _ = writeln!(
            out,
            "link    {}{} id {} -> program {} ({})",
            match l.kind {
                LinkKind::Xdp => "if",
                LinkKind::Tc => "tc",
            },
            l.ifindex,
            l.link_id,
            l.prog_id,
            l.prog_name
        );
    }
    out
}

fn target(t: &RouteTarget) -> String {
    match t {
        RouteTarget::LocalPeer { peer_vpc } => format!("local-peer vpc {peer_vpc}"),
        RouteTarget::RemotePeer { pcx } => format!("remote-peer pcx {pcx}"),
        RouteTarget::Blackhole => "blackhole".into(),
    }
}

/// The prefix an interface entry admits sources from, as `a.b.c.d/len`.
fn iface_subnet(i: &peering_common::IfaceInfo) -> String {
    let len = u32::from_be_bytes(i.subnet_mask).leading_ones();
    format!("{}/{len}", std::net::Ipv4Addr::from(i.subnet))
}

/// Everything programmed, and the path each attached port takes
/// (`ports`: ifindex, interface name, path).
pub fn snapshot(s: &Snapshot, ports: &[(u32, String, PortPath)], as_json: bool) -> String {
    if as_json {
        let v = json!({
            "ports": ports.iter().map(|(i, name, path)| json!({
                "ifindex": i, "name": name, "path": path,
            })).collect::<Vec<_>>(),
            "ifaces": s.ifaces.iter().map(|(k, i)| json!({
                "ifindex": k.ifindex, "vlan": k.vlan, "vpc": i.vpc_id,
                "route_table": i.route_table,
                "gateway_ip": std::net::Ipv4Addr::from(i.gateway_ip).to_string(),
                "subnet": iface_subnet(i),
            })).collect::<Vec<_>>(),
            "vpc_cidrs": s.vpc_cidrs.iter().map(|(v, n)| json!({"vpc": v, "cidr": n.to_string()})).collect::<Vec<_>>(),
            "routes": s.routes.iter().map(|(t, d, tg, c)| json!({
                "table": t, "dst": d.to_string(), "target": target(tg), "counter": c,
            })).collect::<Vec<_>>(),
            "subnets": s.subnets.iter().map(|(v, n, p)| json!({
                "vpc": v, "cidr": n.to_string(), "ifindex": p.ifindex, "vlan": p.vlan,
                "src_mac": format_mac(&p.src_mac),
            })).collect::<Vec<_>>(),
            "neighbours": s.neighbours.iter().map(|(i, a, m)| json!({
                "ifindex": i, "ip": a.to_string(), "mac": format_mac(m),
            })).collect::<Vec<_>>(),
        });
        return format!("{v}\n");
    }
    let mut out = String::new();
    for (i, name, path) in ports {
        let _ = writeln!(out, "port    if{i} {name} path {path}");
    }
    for (k, i) in &s.ifaces {
        let gw = std::net::Ipv4Addr::from(i.gateway_ip);
        let _ = writeln!(
            out,
            "iface   if{} vlan {} -> vpc {} subnet {} table {} router {gw}",
            k.ifindex,
            k.vlan,
            i.vpc_id,
            iface_subnet(i),
            i.route_table
        );
    }
    for (v, n) in &s.vpc_cidrs {
        let _ = writeln!(out, "cidr    vpc {v} {n}");
    }
    for (v, n, p) in &s.subnets {
        let _ = writeln!(
            out,
            "subnet  vpc {v} {n} via if{} vlan {} ({})",
            p.ifindex,
            p.vlan,
            format_mac(&p.src_mac)
        );
    }
    for (t, d, tg, _) in &s.routes {
        let _ = writeln!(out, "route   table {t} {d} -> {}", target(tg));
    }
    for (i, a, m) in &s.neighbours {
        let _ = writeln!(out, "neigh   if{i} {a} {}", format_mac(m));
    }
    out
}

/// The tunnel's counters: one line per peering and per remote gateway, then
/// drops by reason.
/// The resolver's counters (`peering-agent dns-stats`).
pub fn dns_stats(s: &crate::dns::server::DnsStats, as_json: bool) -> String {
    if as_json {
        return format!("{}\n", serde_json::to_string_pretty(s).unwrap_or_default());
    }
    let addrs: Vec<String> = s.addresses.iter().map(|a| a.to_string()).collect();
    let mut out = format!("resolver addresses [{}]\n", addrs.join(", "));
    let rows = [
        ("queries", s.queries),
        ("answers", s.answers),
        ("nxdomain", s.nxdomain),
        ("refused", s.refused),
        ("formerr", s.formerr),
        ("notimp", s.notimp),
        ("drop_short", s.drop_short),
        ("drop_not_query", s.drop_not_query),
        ("drop_oversize", s.drop_oversize),
        ("drop_emit", s.drop_emit),
        ("drop_tcp_busy", s.drop_tcp_busy),
        ("drop_send", s.drop_send),
    ];
    for (name, v) in rows {
        let _ = writeln!(out, "{name:<16} {v:>12}");
    }
    out
}

pub fn tunnel_stats(s: &crate::gateway::TunnelStats, as_json: bool) -> String {
    if as_json {
        return format!("{}\n", serde_json::to_string_pretty(s).unwrap_or_default());
    }
    let epochs: Vec<String> = s.held_epochs.iter().map(|e| e.to_string()).collect();
    let mut out = format!(
        "gateway {}  current epoch {}  held epochs [{}]\n",
        s.gateway_id,
        s.current_epoch
            .map_or_else(|| "none".to_string(), |e| e.to_string()),
        epochs.join(", ")
    );
    let _ = writeln!(
        out,
        "{:<28} {:>10} {:>10} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8}",
        "", "sealed", "opened", "auth", "replay", "epoch", "malformed", "mtu", "policy"
    );
    let rows = s
        .peerings
        .iter()
        .map(|(k, v)| (format!("peering {k}"), v))
        .chain(s.gateways.iter().map(|(k, v)| (format!("gateway {k}"), v)));
    for (name, c) in rows {
        let _ = writeln!(
            out,
            "{:<28} {:>10} {:>10} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8}",
            name,
            c.sealed,
            c.opened,
            c.auth_failures,
            c.replays,
            c.unknown_epoch,
            c.malformed,
            c.mtu_drops,
            c.policy_drops
        );
    }
    // Every reason is exported; the zeros are left out here.
    for (reason, n) in s.drops.iter().filter(|(_, n)| **n > 0) {
        let _ = writeln!(out, "drop {reason:<23} {n:>10}");
    }
    let _ = writeln!(
        out,
        "drops before authentication {:>10}",
        s.drops_before_auth()
    );
    for (name, c) in &s.sockets {
        let _ = writeln!(
            out,
            "socket {name:<16} rx {} tx {}  dropped: rx {} (ring full {}, fill empty {})  tx ring full {}  tx invalid {}",
            c.rx_frames,
            c.tx_frames,
            c.rx_dropped,
            c.rx_ring_full,
            c.rx_fill_ring_empty,
            c.tx_ring_full,
            c.tx_invalid
        );
    }
    if let Some(io) = s.underlay_io {
        let u = &s.underlay;
        let path = match io {
            crate::gateway::UnderlayIo::AfXdp => "af-xdp",
            crate::gateway::UnderlayIo::Socket => "socket",
        };
        let _ = writeln!(
            out,
            "underlay ({path})  sent: af_xdp {} socket {} (no next hop {})  received: af_xdp {} socket {}  malformed {}  over mtu {}",
            u.tx_af_xdp,
            u.tx_socket,
            u.tx_socket_no_next_hop,
            u.rx_af_xdp,
            u.rx_socket,
            u.rx_malformed,
            u.tx_mtu_drops
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::{PathStats, TunnelStats, UnderlayCounters, UnderlayIo};

    #[test]
    fn tunnel_stats_show_paths_sockets_and_the_underlay() {
        let mut s = TunnelStats {
            gateway_id: 3,
            current_epoch: Some(9),
            held_epochs: vec![8, 9],
            underlay_io: Some(UnderlayIo::AfXdp),
            underlay: UnderlayCounters {
                tx_af_xdp: 1200,
                tx_socket: 2,
                rx_af_xdp: 1100,
                ..Default::default()
            },
            ..Default::default()
        };
        s.peerings.insert(
            "pcx-1".into(),
            PathStats {
                sealed: 1200,
                ..Default::default()
            },
        );
        s.drops.insert("replay".into(), 4);
        s.drops.insert("no_subnet".into(), 0);
        s.sockets.insert("5/0".into(), Default::default());
        let text = tunnel_stats(&s, false);
        assert!(text.starts_with("gateway 3  current epoch 9  held epochs [8, 9]"));
        assert!(text.contains("peering pcx-1"), "{text}");
        assert!(text.contains("drop replay"), "{text}");
        assert!(!text.contains("no_subnet"), "zeros left out: {text}");
        assert!(
            text.contains("drops before authentication          4"),
            "{text}"
        );
        assert!(text.contains("socket 5/0"), "{text}");
        assert!(
            text.contains("underlay (af-xdp)  sent: af_xdp 1200 socket 2"),
            "{text}"
        );
        let back: TunnelStats = serde_json::from_str(&tunnel_stats(&s, true)).unwrap();
        assert_eq!(back, s);
        // Counters written before the underlay fields existed still read.
        let old: TunnelStats = serde_json::from_str(
            r#"{"gateway_id":1,"current_epoch":null,"held_epochs":[],"peerings":{},"gateways":{},"drops":{},"sockets":{}}"#,
        )
        .unwrap();
        assert_eq!(old.underlay_io, None);
        assert!(!tunnel_stats(&old, false).contains("underlay"));
    }
}
