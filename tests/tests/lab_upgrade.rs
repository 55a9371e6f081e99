//! Upgrading the dataplane under traffic: a new program is loaded and
//! swapped onto the pinned links with BPF_LINK_UPDATE while a 10 ms ping
//! crosses the region. Nothing may be lost, and the kernel must report the
//! same links running the new program.

use std::{collections::BTreeMap, process::Stdio, time::Duration};

use aya::maps::{MapData, MapInfo};
use peering_tests::{
    control_lab::{eventually, ControlPlane},
    inter_region::InterRegionLab,
    lab::{Agent, IntraRegionLab, Netns},
};
use serde_json::Value;

/// One lab at a time: the no-loss checks must not depend on the scheduler.
static ONE_LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_lab() -> std::sync::MutexGuard<'static, ()> {
    ONE_LAB.lock().unwrap_or_else(|e| e.into_inner())
}

/// Pings `dst` from `ns` every 10 ms, 300 times, running `during` after the
/// first second; returns (sent, received).
fn ping_during(ns: &Netns, dst: &str, during: impl FnOnce()) -> (u64, u64) {
    let ping = ns
        .cmd(&[
            "ping", "-n", "-q", "-c", "300", "-i", "0.01", "-W", "1", dst,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("ping");
    std::thread::sleep(Duration::from_secs(1));
    during();
    let ping = ping.wait_with_output().expect("ping ends");
    sent_received(&String::from_utf8_lossy(&ping.stdout))
}

/// The one pinned program whose pin starts with `prefix`.
fn pinned(programs: &[(String, u64)], prefix: &str) -> u64 {
    let p: Vec<_> = programs
        .iter()
        .filter(|(pin, _)| pin.starts_with(prefix))
        .collect();
    assert_eq!(p.len(), 1, "one pinned {prefix}*: {programs:?}");
    p[0].1
}

/// (link id, program id, program name) of each pinned link, by ifindex.
type Links = BTreeMap<u64, (u64, u64, String)>;
/// (pin name, program id) of each pinned program.
type Programs = Vec<(String, u64)>;

fn links(ag: &Agent) -> (Links, Programs) {
    let v: Value = serde_json::from_str(&ag.ok(&["links", "--json"])).expect("links JSON");
    let links = v["links"]
        .as_array()
        .expect("links")
        .iter()
        .map(|l| {
            let n = |k: &str| l[k].as_u64().expect(k);
            let name = l["prog_name"].as_str().unwrap_or_default().to_string();
            (n("ifindex"), (n("link_id"), n("prog_id"), name))
        })
        .collect();
    let programs = v["programs"]
        .as_array()
        .expect("programs")
        .iter()
        .map(|p| {
            let pin = p["pin"].as_str().expect("pin").to_string();
            (pin, p["prog_id"].as_u64().expect("prog_id"))
        })
        .collect();
    (links, programs)
}

/// `N packets transmitted, M received` of ping's summary.
fn sent_received(out: &str) -> (u64, u64) {
    let line = out
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary in {out}"));
    let num = |word: &str| {
        let before = line.split(word).next().unwrap();
        before
            .split_whitespace()
            .last()
            .unwrap()
            .trim_start_matches(',')
            .parse::<u64>()
            .unwrap()
    };
    (num(" packets transmitted"), num(" received"))
}

/// The ports' tcx links (the default for veths) switch in place like XDP
/// links do.
#[test]
fn an_upgrade_swaps_programs_on_the_links_without_losing_a_packet() {
    let _serial = one_lab();
    upgrade_swaps_programs(IntraRegionLab::new(false), "peering_vpc_tc", "auto");
}

#[test]
fn an_upgrade_swaps_programs_on_xdp_links_without_losing_a_packet() {
    let _serial = one_lab();
    upgrade_swaps_programs(IntraRegionLab::xdp(false), "peering_vpc", "xdp");
}

/// The pin prefix of program `name` (`prog-NAME-`).
fn pin_prefix(name: &str) -> String {
    format!("prog-{name}-")
}

fn upgrade_swaps_programs(r: IntraRegionLab, program: &str, port_path: &str) {
    let ag = r.agent();
    r.peer_routes();
    assert!(r.a.ping("10.2.0.10", 1));
    let (before, programs) = links(&ag);
    assert_eq!(before.len(), 2, "vpc-a and vpc-b are attached: {before:?}");
    let old = pinned(&programs, &pin_prefix(program));
    assert!(before.values().all(|(_, prog, _)| *prog == old));

    // 10 ms ping across the region while the programs are replaced.
    let (sent, received) = ping_during(&r.a, "10.2.0.10", || {
        let out = ag.ok(&["upgrade", "--reload"]);
        assert_eq!(out.matches("Upgraded").count(), 2, "both links: {out}");
    });
    assert_eq!(sent, 300);
    assert_eq!(received, sent, "no ping lost during the upgrade");

    // The same links (ids unchanged) now run the new program.
    let (after, programs) = links(&ag);
    let new = pinned(&programs, &pin_prefix(program));
    assert_ne!(new, old, "a new program instance");
    for (ifindex, (link, prog, name)) in &after {
        assert_eq!(
            link, &before[ifindex].0,
            "if{ifindex}: link updated in place"
        );
        assert_eq!(*prog, new, "if{ifindex} runs the new program");
        assert_eq!(name, program);
    }
    // A later attach finds nothing to do, and forwarding goes on.
    assert!(ag
        .ok(&["attach", "--iface", "vpc-a", "--port-path", port_path])
        .contains("already attached; kept"));
    assert!(r.a.ping("10.2.0.10", 2));
    assert!(ag.stat("fwd_local") >= 2 * sent);
}

/// Across regions, with agents running: both gateways' VPC (tcx), underlay
/// and tunnel entry links are switched under a 10 ms ping from A to C, and
/// none is lost.
#[test]
fn an_upgrade_under_the_tunnel_loses_nothing() {
    let _serial = one_lab();
    let lab = InterRegionLab::new(false, &[]);
    let v = lab.vpcs();
    lab.wait_for_keys();
    lab.peer_a_with_c(&v);
    assert!(
        eventually(Duration::from_secs(10), || lab.a.ping("10.3.0.10", 1)),
        "A reaches C"
    );
    let gateways = [lab.gateway(1), lab.gateway(2)];
    let agents: Vec<Agent> = gateways
        .iter()
        .map(|g| Agent {
            ns: &g.ns,
            pins: &g.pins,
            verbose: false,
        })
        .collect();
    let before: Vec<_> = agents.iter().map(links).collect();
    let (sent, received) = ping_during(&lab.a, "10.3.0.10", || {
        for ag in &agents {
            let out = ag.ok(&["upgrade", "--reload"]);
            assert!(out.contains("Upgraded"), "{out}");
        }
    });
    assert_eq!(
        received, sent,
        "no ping lost across regions during the upgrade"
    );
    for (ag, (links_before, _)) in agents.iter().zip(&before) {
        let (after, programs) = links(ag);
        // Kernel names are cut to 15 bytes.
        let kinds = [
            ("peering_vpc_tc", pinned(&programs, "prog-peering_vpc_tc-")),
            (
                "peering_underla",
                pinned(&programs, "prog-peering_underlay-"),
            ),
            (
                "peering_tun_ent",
                pinned(&programs, "prog-peering_tun_entry-"),
            ),
        ];
        for (kind, _) in kinds {
            assert!(
                after.values().any(|(_, _, name)| name == kind),
                "{kind} is attached: {after:?}"
            );
        }
        for (ifindex, (link, prog, name)) in &after {
            assert_eq!(link, &links_before[ifindex].0, "if{ifindex}: same link");
            assert_ne!(prog, &links_before[ifindex].1, "if{ifindex}: new program");
            let want = kinds
                .iter()
                .find(|(k, _)| k == name)
                .unwrap_or_else(|| panic!("if{ifindex} runs {name}"))
                .1;
            assert_eq!(
                *prog, want,
                "if{ifindex} ({name}) runs this build's program"
            );
        }
    }
}

/// A build whose map definition changed: the agent recreates the map,
/// refills it from the control store, and only then switches the links, so
/// traffic that depends on the map never stops. Simulated by pinning a map
/// of another shape (VPC_CIDRS' trie, 4-byte values) where ROUTES (16-byte
/// values) belongs, while no agent runs.
#[test]
fn a_changed_map_is_recreated_and_refilled_before_links_switch() {
    let _serial = one_lab();
    let lab = IntraRegionLab::network(false);
    let cp = ControlPlane::start(false);
    let a = cp.account("111111111111");
    let b = cp.account("222222222222");
    let agent = cp.agent(&lab.gw, &lab.pins, "us-east-1");
    let ag = lab.agent();
    let vpc_a = cp.create_vpc(&a, "us-east-1", "10.1.0.0/16");
    let vpc_b = cp.create_vpc(&b, "us-east-1", "10.2.0.0/16");
    cp.create_subnet(&a, "us-east-1", &vpc_a, "10.1.0.0/24", "vpc-a");
    cp.create_subnet(&b, "us-east-1", &vpc_b, "10.2.0.0/24", "vpc-b");
    let rtb_a = cp.main_route_table(&a, "us-east-1", &vpc_a);
    let rtb_b = cp.main_route_table(&b, "us-east-1", &vpc_b);
    let pcx = cp.request_peering(&a, "us-east-1", &vpc_a, &vpc_b, &b.id, "us-east-1");
    cp.peering_action(&b, "us-east-1", "accept-vpc-peering-connection", &pcx);
    cp.create_route(&a, "us-east-1", &rtb_a, "10.2.0.0/16", &pcx);
    cp.create_route(&b, "us-east-1", &rtb_b, "10.1.0.0/16", &pcx);
    cp.allow_from(&a, "us-east-1", &vpc_a, "10.2.0.0/16");
    cp.allow_from(&b, "us-east-1", &vpc_b, "10.1.0.0/16");
    lab.hosts_announce();
    assert!(eventually(Duration::from_secs(5), || lab
        .a
        .ping("10.2.0.10", 1)));
    let (before, _) = links(&ag);
    assert_eq!(before.len(), 2);

    drop(agent);
    let maps = lab.pins.path.join("maps");
    std::fs::remove_file(maps.join("ROUTES")).unwrap();
    let other = MapData::from_pin(maps.join("VPC_CIDRS")).unwrap();
    other.pin(maps.join("ROUTES")).unwrap();
    let other_id = MapInfo::from_pin(maps.join("ROUTES")).unwrap().id();

    let mut restarted = None;
    let (sent, received) = ping_during(&lab.a, "10.2.0.10", || {
        restarted = Some(cp.agent(&lab.gw, &lab.pins, "us-east-1"));
    });
    assert_eq!(received, sent, "no ping lost while the map was replaced");
    let switched = || {
        let (after, _) = links(&ag);
        after.iter().all(|(i, (_, prog, _))| *prog != before[i].1)
    };
    assert!(
        eventually(Duration::from_secs(3), switched),
        "links switched"
    );
    assert_ne!(
        MapInfo::from_pin(maps.join("ROUTES")).unwrap().id(),
        other_id,
        "a fresh ROUTES map"
    );
    let show = ag.ok(&["show"]);
    assert_eq!(show.matches("-> local-peer").count(), 2, "refilled: {show}");
    assert!(lab.a.ping("10.2.0.10", 2));
    drop(restarted);
}
