//! The multi-host lab ([`peering_tests::multihost`]): two controllers on a
//! 3-member etcd cluster, each on a host of its own, reached by the agents
//! only over TLS. Cross-region traffic crosses the sealed tunnel; a killed
//! controller is left for the other within seconds; a killed etcd member
//! does not stop writes; a killed rotation leader hands the rotation over
//! without losing a packet.

use std::time::{Duration, Instant};

use peering_tests::{
    control_lab::eventually,
    inter_region::{InterRegionLab, Vpcs, REGION_2},
    lab::ping_replies,
    multihost::MultiHostLab,
};

static ONE_LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_lab() -> std::sync::MutexGuard<'static, ()> {
    ONE_LAB.lock().unwrap_or_else(|e| e.into_inner())
}

fn verbose() -> bool {
    std::env::var_os("PEERING_TEST_VERBOSE").is_some()
}

/// Waits up to `within` for `dst` in gateway 2's route map.
fn route_reaches_gw2(lab: &InterRegionLab, dst: &str, within: Duration) -> bool {
    eventually(within, || {
        lab.gw2.programmed_routes().contains(&dst.to_owned())
    })
}

/// A peered with C across regions, B with C within region 2; both answer.
fn peered(lab: &InterRegionLab) -> (Vpcs, String) {
    let (v, _, bc) = lab.peer_a_c_and_b_c();
    assert!(
        eventually(Duration::from_secs(15), || lab.a.ping("10.3.0.10", 1)),
        "A reaches C across regions"
    );
    assert!(lab.b.ping("10.3.0.10", 1), "B reaches C in region 2");
    (v, bc)
}

/// The URL of controller `i`.
fn controller_url(mh: &MultiHostLab, i: usize) -> String {
    mh.lab
        .cp
        .controllers()
        .split(',')
        .nth(i)
        .expect("controller")
        .to_owned()
}

#[test]
fn cross_region_ping_through_controllers_on_etcd_over_tls() {
    let _serial = one_lab();
    let mh = MultiHostLab::new(verbose(), &[]);
    let lab = &mh.lab;
    assert!(lab.cp.controllers().starts_with("https://198.18.250."));
    peered(lab);
    let s1 = lab.gw1.tunnel_stats();
    assert!(s1.current_epoch.is_some(), "gw1 holds a tunnel key");
    assert!(lab.c.ping("10.1.0.10", 3), "C reaches A");
}

#[test]
fn a_killed_controller_is_left_for_the_other_within_five_seconds() {
    let _serial = one_lab();
    let mut mh = MultiHostLab::new(verbose(), &[]);
    let (v, bc) = peered(&mh.lab);
    // Agents use the first controller first: kill it.
    mh.lab.cp.kill_controller(0);
    let killed = Instant::now();
    mh.lab.cp.endpoint = controller_url(&mh, 1);
    let lab = &mh.lab;
    lab.cp
        .create_route(&lab.acct_b, REGION_2, &v.rtb_b, "10.3.9.0/24", &bc);
    let created = killed.elapsed();
    let reached = route_reaches_gw2(lab, "10.3.9.0/24", Duration::from_secs(10));
    let took = killed.elapsed();
    println!(
        "kill -9 of the agents' controller: a route created on the other one {created:?} after \
         the kill reached gw2's maps {took:?} after the kill"
    );
    assert!(reached, "the route never reached gw2's maps");
    assert!(took < Duration::from_secs(5), "failover took {took:?}");
    assert!(lab.a.ping("10.3.0.10", 1), "A reaches C");
}

#[test]
fn a_killed_etcd_member_stops_no_write_and_catches_up() {
    let _serial = one_lab();
    let mut mh = MultiHostLab::new(verbose(), &[]);
    let (v, bc) = peered(&mh.lab);
    mh.etcd.kill9(0);
    let killed = Instant::now();
    for (i, dst) in ["10.3.10.0/24", "10.3.11.0/24"].iter().enumerate() {
        mh.lab.cp.endpoint = controller_url(&mh, i);
        let lab = &mh.lab;
        lab.cp
            .create_route(&lab.acct_b, REGION_2, &v.rtb_b, dst, &bc);
        assert!(
            route_reaches_gw2(lab, dst, Duration::from_secs(10)),
            "{dst} (written through controller {i}) never reached gw2's maps"
        );
    }
    println!(
        "with etcd member 0 killed: two routes written through each controller reached gw2's \
         maps {:?} after the kill",
        killed.elapsed()
    );
    assert!(mh.lab.a.ping("10.3.0.10", 1), "A reaches C");
    mh.etcd.restart(0);
    mh.etcd.wait_healthy(Duration::from_secs(30));
    let caught_up = eventually(Duration::from_secs(20), || {
        let revs: Vec<Option<u64>> = (0..3).map(|i| mh.etcd.member_revision(i)).collect();
        revs[0].is_some() && revs.iter().all(|r| *r == revs[0])
    });
    assert!(caught_up, "the restarted member never caught up");
}

/// The epochs controller `i` published, from its log.
fn published(mh: &MultiHostLab, i: usize) -> Vec<u64> {
    std::fs::read_to_string(mh.lab.cp.controller_log(i))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("published tunnel key"))
        .filter_map(|l| l.split("epoch=").nth(1)?.split(' ').next()?.parse().ok())
        .collect()
}

#[test]
fn a_killed_rotation_leader_hands_the_rotation_over_without_loss() {
    let _serial = one_lab();
    let mut mh = MultiHostLab::new(verbose(), &["--key-rotation", "2s"]);
    peered(&mh.lab);
    let leader = mh.rotation_leader().expect("a rotation leader");
    let epoch = |mh: &MultiHostLab| mh.lab.gw1.tunnel_stats().current_epoch.unwrap_or(0);
    // 20 s of pings every 10 ms across regions.
    let count: u32 = 2000;
    let ping = mh.lab.a.ping_stream("10.3.0.10", "0.01", count);
    std::thread::sleep(Duration::from_secs(4));
    let before = epoch(&mh);
    mh.lab.cp.kill_controller(leader);
    let killed = Instant::now();
    let other = 1 - leader;
    assert!(
        eventually(Duration::from_secs(10), || mh.rotation_leader()
            == Some(other)),
        "controller {other} never took the rotation"
    );
    let took_over = killed.elapsed();
    let rotated = eventually(Duration::from_secs(10), || epoch(&mh) >= before + 2);
    let got = ping_replies(ping);
    let lost = count as usize - got.len();
    let after = epoch(&mh);
    println!(
        "kill -9 of the rotation leader: controller {other} took the rotation {took_over:?} \
         after; gw1's epoch {before} -> {after}; ping every 10 ms across regions lost {lost} of \
         {count}"
    );
    let mut all = published(&mh, 0);
    all.extend(published(&mh, 1));
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    println!(
        "published epochs: controller 0 {:?}, controller 1 {:?}",
        published(&mh, 0),
        published(&mh, 1)
    );
    assert_eq!(all.len(), n, "an epoch was published twice");
    assert!(
        !published(&mh, other).is_empty(),
        "controller {other} published nothing"
    );
    assert!(
        rotated,
        "rotation stopped after the kill (epoch {before} -> {after})"
    );
    // Sequence numbers run from 1; the kill came 4 s (400 pings) in.
    let missing: Vec<u32> = (1..=count)
        .filter(|s| got.binary_search(s).is_err())
        .collect();
    println!("  lost icmp_seq (the kill at ~400): {missing:?}");
    for (name, gw) in [("gw1", &mh.lab.gw1), ("gw2", &mh.lab.gw2)] {
        let drops: Vec<(String, u64)> = gw
            .tunnel_stats()
            .drops
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect();
        println!("  {name} tunnel drops: {drops:?}");
    }
    // The issue asks for nothing lost: 0 of 2000 in each of 19 runs
    // (a 2-core host, two builds running beside it). On a loss the run
    // prints which packets and each gateway's drop reasons above.
    assert_eq!(lost, 0, "pings lost across the handover: {missing:?}");
}
