//! The region resolver end to end: the two-region lab of
//! `peering_tests::inter_region` (A in us-east-1; B and C in us-west-2),
//! real agents and controller, `dig` from the VPC hosts to their VPC's
//! base + 2 address. Private names resolve from their own VPC; from a peer
//! only after the name's owner enabled `AllowDnsResolutionFromRemoteVpc` on
//! its own side (the other side's option does nothing for it), within a
//! region and across regions; other names are refused.

use std::time::Duration;

use peering_tests::{
    control_lab::{eventually, Account},
    inter_region::{InterRegionLab, REGION_1, REGION_2},
    lab::Netns,
};
use peering_userspace::dns::server::{DnsStats, DNS_STATS_FILE};

/// One two-region lab at a time (two CPUs).
static ONE_LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_lab() -> std::sync::MutexGuard<'static, ()> {
    ONE_LAB.lock().unwrap_or_else(|e| e.into_inner())
}

fn verbose() -> bool {
    std::env::var_os("PEERING_TEST_VERBOSE").is_some()
}

const A_NAME: &str = "ip-10-1-0-10.ec2.internal";
const B_NAME: &str = "ip-10-2-0-10.us-west-2.compute.internal";
const C_NAME: &str = "ip-10-3-0-10.us-west-2.compute.internal";

/// `dig` from `host` to `server`: (status, answer data). Bounded: 3 tries
/// of 1 s; no reply at all is the status "no reply".
fn dig(host: &Netns, server: &str, args: &[&str]) -> (String, Vec<String>) {
    let at = format!("@{server}");
    let mut argv = vec![
        "dig",
        &at,
        "+time=1",
        "+tries=3",
        "+noall",
        "+comments",
        "+answer",
    ];
    argv.extend_from_slice(args);
    let out = peering_tests::lab::run(&mut host.cmd(&argv));
    let text = String::from_utf8_lossy(&out.stdout);
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("no reply")
        .to_owned();
    let answers = text
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
        .collect();
    (status, answers)
}

/// Waits (up to 10 s: the agents follow the controller within a second)
/// until `host` asking its resolver about `name` gets `want` (an address,
/// "NXDOMAIN" or "REFUSED").
fn expect(host: &Netns, resolver: &str, name: &str, want: &str) {
    let mut last = (String::new(), vec![]);
    let ok = eventually(Duration::from_secs(10), || {
        last = dig(host, resolver, &[name, "A"]);
        match want {
            "NXDOMAIN" | "REFUSED" => last.0 == want && last.1.is_empty(),
            addr => last.0 == "NOERROR" && last.1 == [addr],
        }
    });
    assert!(ok, "{} asks {name}: wanted {want}, got {last:?}", host.name);
}

fn allow_dns(lab: &InterRegionLab, who: &Account, region: &str, pcx: &str, side: &str, on: bool) {
    let flag = format!("--{side}-peering-connection-options");
    let value = format!("AllowDnsResolutionFromRemoteVpc={on}");
    lab.cp.peerctl(
        who,
        region,
        &[
            "modify-vpc-peering-connection-options",
            "--vpc-peering-connection-id",
            pcx,
            &flag,
            &value,
        ],
    );
}

#[test]
fn private_names_resolve_from_their_vpc_and_from_peers_their_owner_allowed() {
    let _serial = one_lab();
    let lab = InterRegionLab::new(verbose(), &[]);
    let v = lab.vpcs();
    let (a, b, c) = (&lab.a, &lab.b, &lab.c);
    let (ra, rb, rc) = ("10.1.0.2", "10.2.0.2", "10.3.0.2");

    // Own names, in each region's zone, over UDP and TCP, any case.
    expect(a, ra, A_NAME, "10.1.0.10");
    expect(b, rb, B_NAME, "10.2.0.10");
    expect(c, rc, C_NAME, "10.3.0.10");
    let (s, ans) = dig(a, ra, &["+tcp", "IP-10-1-0-10.EC2.Internal", "A"]);
    assert_eq!((s.as_str(), ans), ("NOERROR", vec!["10.1.0.10".to_owned()]));
    let (s, ans) = dig(a, ra, &["-x", "10.1.0.10"]);
    assert_eq!((s.as_str(), ans), ("NOERROR", vec![format!("{A_NAME}.")]));
    // Not recursing: other names are refused; the wrong zone is NXDOMAIN.
    expect(a, ra, "example.com", "REFUSED");
    expect(a, ra, "ip-10-1-0-10.us-east-1.compute.internal", "NXDOMAIN");

    // Unpeered VPCs see nothing of each other, whatever the region.
    expect(a, ra, C_NAME, "NXDOMAIN");
    expect(b, rb, C_NAME, "NXDOMAIN");
    expect(c, rc, A_NAME, "NXDOMAIN");

    // Peered (A–C across regions, B–C within us-west-2; A and B request),
    // no option yet: still nothing.
    let ac = lab.peer(
        (&lab.acct_a, REGION_1, &v.a, &v.rtb_a, "10.1.0.0/16"),
        (&lab.acct_c, REGION_2, &v.c, &v.rtb_c, "10.3.0.0/16"),
    );
    let bc = lab.peer(
        (&lab.acct_b, REGION_2, &v.b, &v.rtb_b, "10.2.0.0/16"),
        (&lab.acct_c, REGION_2, &v.c, &v.rtb_c, "10.3.0.0/16"),
    );
    expect(b, rb, C_NAME, "NXDOMAIN");
    expect(a, ra, C_NAME, "NXDOMAIN");

    // Within the region: B's owner allowing on B's side lets C resolve
    // B's names, not B resolve C's.
    allow_dns(&lab, &lab.acct_b, REGION_2, &bc, "requester", true);
    expect(c, rc, B_NAME, "10.2.0.10");
    expect(b, rb, C_NAME, "NXDOMAIN");
    // C's owner on C's side: now B resolves C's names.
    allow_dns(&lab, &lab.acct_c, REGION_2, &bc, "accepter", true);
    expect(b, rb, C_NAME, "10.3.0.10");

    // Across regions: C allowing on its side of A–C lets A resolve C's
    // names (in us-west-2's zone), while C still cannot resolve A's.
    allow_dns(&lab, &lab.acct_c, REGION_2, &ac, "accepter", true);
    expect(a, ra, C_NAME, "10.3.0.10");
    expect(a, ra, "ip-10-3-0-10.ec2.internal", "NXDOMAIN");
    expect(c, rc, A_NAME, "NXDOMAIN");
    let (s, ans) = dig(a, ra, &["-x", "10.3.0.10"]);
    assert_eq!((s.as_str(), ans), ("NOERROR", vec![format!("{C_NAME}.")]));
    allow_dns(&lab, &lab.acct_a, REGION_1, &ac, "requester", true);
    expect(c, rc, A_NAME, "10.1.0.10");
    // B is not peered with A: C's permission does not carry over.
    expect(b, rb, A_NAME, "NXDOMAIN");

    // Turning the option off, or deleting the peering, ends it.
    allow_dns(&lab, &lab.acct_c, REGION_2, &bc, "accepter", false);
    expect(b, rb, C_NAME, "NXDOMAIN");
    lab.cp
        .peering_action(&lab.acct_a, REGION_1, "delete-vpc-peering-connection", &ac);
    expect(a, ra, C_NAME, "NXDOMAIN");
    expect(c, rc, A_NAME, "NXDOMAIN");

    // The counters say what was answered.
    let stats = |gw: &peering_tests::inter_region::Gateway| {
        DnsStats::read(&gw.state.join(DNS_STATS_FILE)).unwrap_or_default()
    };
    let counted = eventually(Duration::from_secs(3), || {
        let s = stats(&lab.gw1);
        s.answers > 0 && s.nxdomain > 0 && s.refused > 0
    });
    let s = stats(&lab.gw1);
    assert!(counted, "{s:?}");
    assert_eq!(
        s.addresses,
        ["10.1.0.2".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    assert_eq!(s.formerr + s.drop_short + s.drop_oversize, 0, "{s:?}");
    assert_eq!(stats(&lab.gw2).addresses.len(), 2);
}

/// A VPC created later gets its resolver address, one deleted loses it;
/// a host of one VPC asking another VPC's resolver is refused.
#[test]
fn resolver_addresses_follow_the_vpcs() {
    let _serial = one_lab();
    let lab = InterRegionLab::new(verbose(), &[]);
    let v = lab.vpcs();
    expect(&lab.b, "10.2.0.2", B_NAME, "10.2.0.10");
    let has = |addr: &str| {
        lab.gw2
            .ns
            .exec_ok(&["ip", "-4", "-o", "addr", "show", "dev", "lo"])
            .contains(&format!("{addr}/32"))
    };
    assert!(has("10.2.0.2") && has("10.3.0.2"));
    let d = lab.cp.create_vpc(&lab.acct_b, REGION_2, "10.4.0.0/16");
    assert!(eventually(Duration::from_secs(10), || has("10.4.0.2")));
    // B's host reaches 10.4.0.2 through the gateway's kernel (no route of
    // B's covers it): another VPC's resolver refuses it.
    expect(&lab.b, "10.4.0.2", B_NAME, "REFUSED");
    lab.cp
        .peerctl(&lab.acct_b, REGION_2, &["delete-vpc", "--vpc-id", &d]);
    assert!(eventually(Duration::from_secs(10), || !has("10.4.0.2")));
    assert!(has("10.2.0.2"), "{}", v.b);
}

/// On the XDP port path too the query passes to the gateway's kernel; an
/// agent restarted with `--dns off` removes the addresses and nothing
/// answers.
#[test]
fn the_xdp_path_reaches_the_resolver_and_dns_off_removes_it() {
    let _serial = one_lab();
    let mut lab = InterRegionLab::new(verbose(), &[]);
    lab.use_xdp_path();
    lab.vpcs();
    expect(&lab.a, "10.1.0.2", A_NAME, "10.1.0.10");
    let (s, ans) = dig(&lab.a, "10.1.0.2", &["+tcp", A_NAME, "A"]);
    assert_eq!((s.as_str(), ans), ("NOERROR", vec!["10.1.0.10".to_owned()]));
    lab.gw1.stop_agent();
    let gw = &lab.gw1;
    let mut cmd = lab.cp.tunnel_agent_cmd(
        &gw.ns,
        &gw.pins,
        gw.region,
        gw.underlay,
        gw.underlay_io,
        &gw.state,
    );
    cmd.args.extend(["--port-path".into(), "xdp".into()]);
    cmd.args.extend(["--dns".into(), "off".into()]);
    let _agent = peering_tests::teardown::spawn(&mut cmd.command()).expect("agent");
    let gone = || {
        !gw.ns
            .exec_ok(&["ip", "-4", "-o", "addr", "show", "dev", "lo"])
            .contains("10.1.0.2/32")
    };
    assert!(
        eventually(Duration::from_secs(10), gone),
        "--dns off removes the address"
    );
    assert_eq!(dig(&lab.a, "10.1.0.2", &[A_NAME, "A"]).0, "no reply");
    // The agent runs on: the gateway still answers its hosts.
    assert!(lab.a.ping("10.1.0.1", 2));
}
