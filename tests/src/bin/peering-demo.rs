//! The lab demo (`cargo xtask demo`): two regions, three accounts, three
//! VPCs. VPC A is in us-east-1; VPCs B and C are in us-west-2. A peers with
//! C across regions (sealed in the tunnel), B peers with C inside us-west-2
//! (the XDP fast path). Everything is driven through `peerctl` against
//! `peering-controld`; each region's `peering-agent` programs its gateway.
//! All of it lives in network namespaces and temporary files of this
//! process, torn down when it ends, fails, or gets SIGINT, SIGTERM or
//! SIGHUP; its processes also die if it is killed (see
//! `peering_tests::teardown`).
//!
//! `--hold` keeps the lab up after the story until interrupted; `--up`
//! only builds the lab (namespaces, controller, both agents), prints
//! `lab up: …` and holds.
//!
//! `--store etcd` tells the multi-host story instead
//! ([`peering_tests::multihost`]): a 3-member etcd cluster, two controllers
//! on it serving TLS, the agents reaching them over TLS, the controllers
//! reaching etcd over TLS with client certificates; one etcd member and
//! then the agents' controller are killed (SIGKILL) while a ping crosses
//! regions every 20 ms, and writes go on through the other controller.

use std::time::Duration;

use peering_tests::{
    control_lab::eventually,
    inter_region::{udp_of, Capture, InterRegionLab, REGION_1, REGION_2, WIRE_IF},
    lab::{Agent, Netns, TempPath},
    say,
};
use peering_userspace::out;

fn step(title: &str) {
    say!("\n== {title}");
}

fn ping(from: &Netns, who: &str, dst: &str) -> bool {
    let ok = from.ping(dst, 2);
    say!(
        "  ping from {who} to {dst}: {}",
        if ok { "replies" } else { "no reply" }
    );
    ok
}

fn main() {
    let hold = std::env::args().any(|a| a == "--hold");
    let up_only = std::env::args().any(|a| a == "--up");
    let args: Vec<String> = std::env::args().collect();
    if args.windows(2).any(|w| w[0] == "--store" && w[1] == "etcd") {
        return etcd_story();
    }

    step("Lab: gateways of us-east-1 (198.18.0.1) and us-west-2 (198.18.1.2), underlay subnets joined by a router");
    let lab = InterRegionLab::new(true, &[]);
    if up_only {
        say!(
            "lab up: namespaces {}…, peering-controld on {}. Ctrl-C tears it down.",
            lab.gw1.ns.name,
            lab.cp.endpoint
        );
        hold_until_interrupted();
    }
    say!(
        "  peering-controld on {} (SQLite store {}), keys rotated every 10 min",
        lab.cp.endpoint,
        lab.cp.db.display()
    );
    say!("  one peering-agent per region, tunnel on UDP port 51900, AF_XDP on the underlay interfaces");

    step("Three accounts create a VPC each: A in us-east-1, B and C in us-west-2");
    let v = lab.vpcs();
    lab.wait_for_keys();
    say!(
        "  both gateways hold the deployment's tunnel key (epoch {})",
        lab.gw1.tunnel_stats().current_epoch.unwrap_or(0)
    );
    ping(&lab.a, "VPC A", "10.3.0.10");

    step("A peers with C across regions (C accepts in us-west-2, both add routes)");
    let ac = lab.peer(
        (&lab.acct_a, REGION_1, &v.a, &v.rtb_a, "10.1.0.0/16"),
        (&lab.acct_c, REGION_2, &v.c, &v.rtb_c, "10.3.0.0/16"),
    );
    eventually(Duration::from_secs(5), || lab.a.ping("10.3.0.10", 1));
    ping(&lab.a, "VPC A", "10.3.0.10");
    ping(&lab.c, "VPC C", "10.1.0.10");

    step("B peers with C inside us-west-2");
    let bc = lab.peer(
        (&lab.acct_b, REGION_2, &v.b, &v.rtb_b, "10.2.0.0/16"),
        (&lab.acct_c, REGION_2, &v.c, &v.rtb_c, "10.3.0.0/16"),
    );
    eventually(Duration::from_secs(5), || lab.b.ping("10.3.0.10", 1));
    ping(&lab.b, "VPC B", "10.3.0.10");
    say!("  peerings: {ac} (inter-region), {bc} (intra-region)");

    step("No transitive peering: A is not peered with B");
    ping(&lab.a, "VPC A", "10.2.0.10");

    step("What the underlay carries while A and B both talk to C");
    let file = TempPath::new("demo.pcap");
    let capture = Capture::start(&lab.wan, WIRE_IF, &file.path);
    lab.a.ping("10.3.0.10", 5);
    lab.b.ping("10.3.0.10", 5);
    let frames = capture.finish();
    drop(file);
    let tunnel = frames
        .iter()
        .filter(|f| matches!(udp_of(f), Some((17, 51900, 51900, _))))
        .count();
    say!(
        "  {} frames captured, {tunnel} of them UDP 51900 <-> 51900 (sealed, no VPC address or id visible);",
        frames.len()
    );
    say!("  B <-> C never touches the underlay: XDP redirects it inside the gateway");

    step("Tunnel counters on us-east-1 (per peering, per remote gateway, drops by reason)");
    let ag1 = Agent {
        ns: &lab.gw1.ns,
        pins: &lab.gw1.pins,
        verbose: false,
    };
    let state = lab.gw1.state.to_string_lossy().into_owned();
    let _ = out::print(&ag1.ok(&["tunnel-stats", "--state-dir", &state]));

    step("XDP counters on us-west-2: fwd_local (B <-> C) next to fwd_remote (to the tunnel)");
    let ag2 = Agent {
        ns: &lab.gw2.ns,
        pins: &lab.gw2.pins,
        verbose: false,
    };
    for line in ag2.ok(&["stats"]).lines() {
        let count = line.split_whitespace().nth(1);
        let shown = line.starts_with("counter")
            || line.starts_with("fwd_")
            || (line.starts_with("drop_") && count.is_some_and(|n| n != "0"));
        if shown {
            say!("  {line}");
        }
    }

    if hold {
        say!(
            "\nThe lab is up: try `ip netns exec {} ping 10.3.0.10`. Ctrl-C tears it down.",
            lab.a.name
        );
        hold_until_interrupted();
    }

    step("A deletes its peering with C: routes become blackholes, traffic stops");
    lab.cp
        .peering_action(&lab.acct_a, REGION_1, "delete-vpc-peering-connection", &ac);
    eventually(Duration::from_secs(3), || !lab.a.ping("10.3.0.10", 1));
    ping(&lab.a, "VPC A", "10.3.0.10");
    ping(&lab.b, "VPC B", "10.3.0.10");

    step("Tearing the lab down");
}

/// Parks until a signal's teardown ends the process.
fn hold_until_interrupted() -> ! {
    loop {
        std::thread::park();
    }
}

/// The multi-host story (`--store etcd`).
fn etcd_story() {
    use peering_tests::multihost::MultiHostLab;

    step("Multi-host lab: 3 etcd members and 2 controllers, each on a host (namespace) of its own");
    let mut mh = MultiHostLab::new(true, &[]);
    let urls: Vec<String> = mh
        .lab
        .cp
        .controllers()
        .split(',')
        .map(str::to_owned)
        .collect();
    say!(
        "  store {} (etcd TLS-only: members and controllers present certificates of the etcd CA)",
        mh.store
    );
    say!(
        "  controllers {} (TLS, certificate from the lab CA); the agents reach them only over TLS",
        urls.join(" and ")
    );

    step("Three accounts create a VPC each; A peers with C across regions, B with C inside us-west-2");
    let lab = &mh.lab;
    let (v, _, bc) = lab.peer_a_c_and_b_c();
    eventually(Duration::from_secs(10), || lab.a.ping("10.3.0.10", 1));
    ping(&lab.a, "VPC A", "10.3.0.10");

    step("A pings C across regions every 20 ms (15 s) while things break");
    let count = 750u32;
    let stream = lab.a.ping_stream("10.3.0.10", "0.02", count);
    std::thread::sleep(Duration::from_secs(2));

    step("kill -9 of etcd member 0");
    mh.etcd.kill9(0);
    std::thread::sleep(Duration::from_secs(1));
    mh.lab
        .cp
        .create_route(&mh.lab.acct_b, REGION_2, &v.rtb_b, "10.3.10.0/24", &bc);
    say!(
        "  a route written through {} with one member down: accepted",
        urls[0]
    );

    step("kill -9 of the controller the agents use");
    mh.lab.cp.kill_controller(0);
    mh.lab.cp.endpoint = urls[1].clone();
    mh.lab
        .cp
        .create_route(&mh.lab.acct_b, REGION_2, &v.rtb_b, "10.3.11.0/24", &bc);
    say!(
        "  a route written through {}: accepted; the agents moved there",
        urls[1]
    );

    let got = peering_tests::lab::ping_replies(stream).len();
    say!(
        "  A -> C: {got} of {count} pings answered ({} lost) through both failures",
        count as usize - got
    );

    step("etcd member 0 restarts and catches up");
    mh.etcd.restart(0);
    mh.etcd.wait_healthy(Duration::from_secs(30));
    say!("  cluster healthy again");

    step("Tearing the lab down");
}
