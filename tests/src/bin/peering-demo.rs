//! The lab demo (`cargo xtask demo`): one region, two accounts, two VPCs.
//! Everything is driven through `peerctl` against `peering-controld`; the
//! region's `peering-agent` programs the XDP dataplane of the gateway.
//! All of it lives in network namespaces and temporary files of this
//! process, torn down on exit or Ctrl-C.

use std::time::Duration;

use peering_tests::{
    control_lab::{eventually, field, Account, ControlPlane},
    lab::{cleanup_own, Agent, IntraRegionLab},
};

const REGION: &str = "us-east-1";
const OWNER_A: &str = "111111111111";
const OWNER_B: &str = "222222222222";

fn step(title: &str) {
    println!("\n== {title}");
}

fn ping(lab: &IntraRegionLab, from_a: bool) -> bool {
    let (ns, who, dst) = if from_a {
        (&lab.a, "A", "10.2.0.10")
    } else {
        (&lab.b, "B", "10.1.0.10")
    };
    let ok = ns.ping(dst, 2);
    println!(
        "  ping from VPC {who} to {dst}: {}",
        if ok { "replies" } else { "no reply" }
    );
    ok
}

/// The peering's status code as `who` sees it.
fn status(cp: &ControlPlane, who: &Account, pcx: &str) -> String {
    let args = [
        "describe-vpc-peering-connections",
        "--vpc-peering-connection-ids",
        pcx,
    ];
    let v = cp.peerctl(who, REGION, &args);
    field(&v, &["VpcPeeringConnections", "0", "Status", "Code"])
}

fn main() {
    let hold = std::env::args().any(|a| a == "--hold");
    ctrlc::set_handler(|| {
        println!("\ninterrupted: tearing the lab down");
        cleanup_own();
        std::process::exit(130);
    })
    .expect("install Ctrl-C handler");

    step("Lab: a gateway namespace (kernel forwarding off) with two VPC ports, a host behind each");
    let lab = IntraRegionLab::network(false);
    let cp = ControlPlane::start(true);
    println!(
        "  peering-controld on {} (SQLite store {})",
        cp.endpoint,
        cp.db.display()
    );
    let a = cp.account(OWNER_A);
    let b = cp.account(OWNER_B);
    println!("  accounts {OWNER_A} and {OWNER_B} have tokens");
    let _agent = cp.agent(&lab.gw, &lab.pins, REGION);
    println!("  peering-agent run --region {REGION} programs the gateway");
    let gw = Agent {
        ns: &lab.gw,
        pins: &lab.pins,
        verbose: true,
    };

    step("Each account creates a VPC and a subnet on a gateway port");
    let vpc_a = cp.create_vpc(&a, REGION, "10.1.0.0/16");
    let vpc_b = cp.create_vpc(&b, REGION, "10.2.0.0/16");
    cp.create_subnet(&a, REGION, &vpc_a, "10.1.0.0/24", "vpc-a");
    cp.create_subnet(&b, REGION, &vpc_b, "10.2.0.0/24", "vpc-b");
    lab.hosts_announce();
    ping(&lab, true);

    step("Account A requests a peering with B's VPC");
    let pcx = cp.request_peering(&a, REGION, &vpc_a, &vpc_b, OWNER_B, REGION);
    println!("  {pcx}: {}", status(&cp, &a, &pcx));

    step("Account B accepts it");
    cp.peering_action(&b, REGION, "accept-vpc-peering-connection", &pcx);
    println!("  {pcx}: {}", status(&cp, &b, &pcx));
    ping(&lab, true);
    println!("  (no routes yet)");

    step("Both sides add a route to the peering in their main route table");
    let rtb_a = cp.main_route_table(&a, REGION, &vpc_a);
    cp.create_route(&a, REGION, &rtb_a, "10.2.0.0/16", &pcx);
    let rtb_b = cp.main_route_table(&b, REGION, &vpc_b);
    cp.create_route(&b, REGION, &rtb_b, "10.1.0.0/16", &pcx);
    eventually(Duration::from_secs(2), || lab.a.ping("10.2.0.10", 1));
    ping(&lab, true);
    ping(&lab, false);

    step("A host in VPC A sending from an address outside A is dropped (anti-spoofing)");
    lab.a
        .exec_ok(&["ip", "addr", "add", "10.9.9.9/32", "dev", "eth0"]);
    let spoofed = lab.a.ping_from(Some("10.9.9.9"), "10.2.0.10", 2);
    println!(
        "  spoofed ping: {}",
        if spoofed { "replies (!)" } else { "dropped" }
    );

    step("Dataplane state and counters on the gateway (every packet counted under one reason)");
    print!("{}", gw.ok(&["show"]));
    print!("{}", gw.ok(&["stats"]));

    if hold {
        println!(
            "\nThe lab is up: try `ip netns exec {} ping 10.2.0.10`. Ctrl-C tears it down.",
            lab.a.name
        );
        loop {
            std::thread::park();
        }
    }

    step("Account A deletes the peering: its routes become blackholes");
    cp.peering_action(&a, REGION, "delete-vpc-peering-connection", &pcx);
    eventually(Duration::from_secs(2), || !lab.a.ping("10.2.0.10", 1));
    ping(&lab, true);
    println!("  drop_blackhole: {}", gw.stat("drop_blackhole"));

    step("Tearing the lab down");
}
