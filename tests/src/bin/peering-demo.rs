//! The lab demo (`cargo xtask demo`): one region's gateway, two VPCs, the
//! XDP fast path between them. Everything is created in network namespaces
//! of this process and torn down on exit or Ctrl-C.

use peering_tests::lab::{cleanup_own, IntraRegionLab};

fn step(title: &str) {
    println!("\n== {title}");
}

fn ping(lab: &IntraRegionLab, from_a: bool, dst: &str) {
    let (ns, who) = if from_a { (&lab.a, "A") } else { (&lab.b, "B") };
    let ok = ns.ping(dst, 3);
    println!(
        "  ping from VPC {who} to {dst}: {}",
        if ok { "replies" } else { "no reply" }
    );
}

fn main() {
    let hold = std::env::args().any(|a| a == "--hold");
    ctrlc::set_handler(|| {
        println!("\ninterrupted: tearing the lab down");
        cleanup_own();
        std::process::exit(130);
    })
    .expect("install Ctrl-C handler");

    step("Lab: gateway namespace (kernel forwarding off), VPC A 10.1.0.0/16, VPC B 10.2.0.0/16");
    let lab = IntraRegionLab::new(true);
    let ag = lab.agent();

    step("Before any route: VPC A cannot reach VPC B");
    ping(&lab, true, "10.2.0.10");

    step("Routes to the peering in both route tables");
    lab.peer_routes();
    ping(&lab, true, "10.2.0.10");
    ping(&lab, false, "10.1.0.10");

    step("A host in VPC A sending from an address outside A is dropped");
    lab.a
        .exec_ok(&["ip", "addr", "add", "10.9.9.9/32", "dev", "eth0"]);
    let spoofed = lab.a.ping_from(Some("10.9.9.9"), "10.2.0.10", 2);
    println!(
        "  spoofed ping: {}",
        if spoofed { "replies (!)" } else { "dropped" }
    );

    step("The route becomes a blackhole: traffic stops");
    ag.ok(&[
        "route",
        "set",
        "--table",
        "1",
        "--dst",
        "10.2.0.0/16",
        "--blackhole",
    ]);
    ping(&lab, true, "10.2.0.10");
    lab.peer_routes();

    step("Dataplane state and counters (every packet is counted under one reason)");
    print!("{}", ag.ok(&["show"]));
    print!("{}", ag.ok(&["stats"]));

    if hold {
        println!(
            "\nThe lab is up: try `ip netns exec {} ping 10.2.0.10`. Ctrl-C tears it down.",
            lab.a.name
        );
        loop {
            std::thread::park();
        }
    }
    step("Tearing the lab down");
}
