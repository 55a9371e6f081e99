//! Agents reach their controllers over the network and do not need them to
//! forward: with no controller reachable for 30 s, intra- and inter-region
//! traffic keep flowing (the pinned XDP dataplane stays, the tunnel keeps
//! its keys); when a controller returns, the agents catch up and a new
//! route reaches the dataplane. And an agent whose controller is killed
//! fails over to the next one within seconds.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use peering_tests::{
    control_lab::{eventually, Proc},
    inter_region::{InterRegionLab, Vpcs, REGION_2},
    lab::Netns,
    teardown,
};

static ONE_LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn verbose() -> bool {
    std::env::var_os("PEERING_TEST_VERBOSE").is_some()
}

/// Ping interval of the streams.
const INTERVAL_S: f64 = 0.02;
/// How long no controller is reachable.
const OUTAGE: Duration = Duration::from_secs(30);
/// Lost pings tolerated per stream (a stray loss on a loaded 2-core host).
/// Runs lost 0; before the registry grace counted from the first answer
/// without a gateway, the controller's return cost 24-53 across regions.
const MAX_LOST: usize = 3;

/// `count` pings from `ns` to `dst`, one every 20 ms.
fn ping_stream(ns: &Netns, dst: &str, count: u32) -> Proc {
    let count = count.to_string();
    let interval = INTERVAL_S.to_string();
    teardown::spawn(
        ns.cmd(&[
            "ping", "-n", "-D", "-i", &interval, "-W", "1", "-c", &count, dst,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null()),
    )
    .expect("start ping")
}

/// (icmp_seq, receive time as Unix seconds) of each echo reply of a
/// finished stream.
fn received(mut p: Proc) -> Vec<(u32, f64)> {
    use std::io::Read as _;
    let mut out = String::new();
    if let Some(mut s) = p.0.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    let _ = p.0.wait();
    let mut r: Vec<(u32, f64)> = out
        .lines()
        .filter(|l| l.contains("bytes from") && !l.contains("DUP"))
        .filter_map(|l| {
            let ts = l.strip_prefix('[')?.split(']').next()?.parse().ok()?;
            let seq = l.split("icmp_seq=").nth(1)?.split(' ').next()?;
            Some((seq.parse().ok()?, ts))
        })
        .collect();
    r.sort_by_key(|(seq, _)| *seq);
    r
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The runs of lost replies: (how many, seconds after `from` the last
/// reply before the run came).
fn gaps(replies: &[(u32, f64)], from: f64) -> Vec<(u32, f64)> {
    replies
        .windows(2)
        .filter(|w| w[1].0 > w[0].0 + 1)
        .map(|w| (w[1].0 - w[0].0 - 1, w[0].1 - from))
        .collect()
}

/// A peered with C across regions, B with C within region 2; both flows
/// answer.
fn peered_lab(lab: &InterRegionLab) -> (Vpcs, String) {
    let (v, _, bc) = lab.peer_a_c_and_b_c();
    assert!(
        eventually(Duration::from_secs(15), || lab.a.ping("10.3.0.10", 1)),
        "A reaches C across regions"
    );
    assert!(lab.b.ping("10.3.0.10", 1), "B reaches C in region 2");
    (v, bc)
}

/// Waits up to `within` for `dst` in gateway 2's route map; how long it
/// took.
fn route_reaches_gw2(lab: &InterRegionLab, dst: &str, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let found = eventually(within, || {
        lab.gw2.programmed_routes().contains(&dst.to_owned())
    });
    found.then(|| start.elapsed())
}

#[test]
fn forwarding_goes_on_without_a_controller_and_catches_up_when_one_returns() {
    let _serial = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = InterRegionLab::new(verbose(), &[]);
    let (v, bc) = peered_lab(&lab);

    // Streams over the outage: a second before it, two after the
    // controller is back.
    let count = ((OUTAGE.as_secs_f64() + 3.0) / INTERVAL_S) as u32;
    let across = ping_stream(&lab.a, "10.3.0.10", count);
    let within = ping_stream(&lab.b, "10.3.0.10", count);
    std::thread::sleep(Duration::from_secs(1));
    lab.cp.kill();
    let killed = unix_now();
    std::thread::sleep(OUTAGE);
    assert!(lab.gw1.agent_pid().is_some() && lab.gw2.agent_pid().is_some());
    let restarted = unix_now();
    lab.cp.restart();
    let (across, within) = (received(across), received(within));
    let lost = |got: &Vec<(u32, f64)>| count as usize - got.len();
    println!(
        "{} s without a controller, ping every 20 ms: A -> C (across regions) lost {} of {count}, \
         B -> C (within us-west-2) lost {} of {count}; the controller was back {:.1} s after the kill",
        OUTAGE.as_secs(),
        lost(&across),
        lost(&within),
        restarted - killed
    );
    if let (Some(first), Some(last)) = (across.first(), across.last()) {
        println!(
            "  A -> C: {} replies over {:.1} s",
            across.len(),
            last.1 - first.1
        );
    }
    for (name, r) in [("A -> C", &across), ("B -> C", &within)] {
        for (n, at) in gaps(r, killed) {
            println!("  {name}: {n} lost from {at:.2} s after the kill");
        }
    }
    assert!(lost(&within) <= MAX_LOST, "B -> C lost {}", lost(&within));
    assert!(lost(&across) <= MAX_LOST, "A -> C lost {}", lost(&across));

    // Back: a route created now reaches the dataplane.
    lab.cp
        .create_route(&lab.acct_b, REGION_2, &v.rtb_b, "10.3.7.0/24", &bc);
    let took = route_reaches_gw2(&lab, "10.3.7.0/24", Duration::from_secs(10));
    println!("after the restart, a new route reached gw2's maps in {took:?}");
    assert!(took.is_some(), "the new route never reached gw2's maps");
    assert!(lab.a.ping("10.3.0.10", 1) && lab.b.ping("10.3.0.10", 1));
}

#[test]
fn an_agent_fails_over_to_the_next_controller_within_five_seconds() {
    let _serial = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = InterRegionLab::new(verbose(), &[]);
    // A second controller on the same store; gateway 2's agent is started
    // again knowing both (the first first).
    let second = lab.cp.start_another();
    lab.cp.add_controller(&second);
    lab.start_agent(2);
    let (v, bc) = peered_lab(&lab);
    assert!(
        route_reaches_gw2(&lab, "10.3.0.0/16", Duration::from_secs(5)).is_some(),
        "gw2 holds B's route to C"
    );

    lab.cp.kill();
    let killed = Instant::now();
    // peerctl talks to the second controller too.
    lab.cp.endpoint = second;
    lab.cp
        .create_route(&lab.acct_b, REGION_2, &v.rtb_b, "10.3.9.0/24", &bc);
    let took = route_reaches_gw2(&lab, "10.3.9.0/24", Duration::from_secs(10));
    println!(
        "kill -9 of gw2's controller: a route created on the second one reached gw2's maps \
         {:?} after the kill",
        took.map(|_| killed.elapsed())
    );
    assert!(took.is_some(), "the route never reached gw2's maps");
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "failover took {:?}",
        killed.elapsed()
    );
    assert!(lab.b.ping("10.3.0.10", 1), "B reaches C");
}
