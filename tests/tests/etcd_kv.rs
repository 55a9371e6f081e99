//! The etcd backend of the `Kv` contract on real etcd processes (Debian's
//! `etcd-server`), each in a network namespace of its own: the contract
//! suite on one member and on three, a member killed with SIGKILL, and
//! leadership passing on when its holder dies or is cut off.

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use peering_tests::etcd::EtcdCluster;
use peering_tests::kv_contract::{self, commit_now, put, Backend};
use peering_tests::lab::{bin, unique};
use peering_tests::teardown;
use peering_userspace::control::store::kv::Kv;

fn prefix() -> String {
    format!("/{}/", unique("kv"))
}

fn contract_on(cluster: &EtcdCluster, name: &str) {
    let p = prefix();
    let open = || Arc::new(cluster.kv(&p)) as Arc<dyn Kv>;
    let compact = |rev: u64| cluster.compact(rev);
    kv_contract::run_all(&Backend {
        name,
        open: &open,
        compact: Some(&compact),
        elects: true,
    });
}

#[test]
fn contract_on_one_member() {
    let cluster = EtcdCluster::start(1);
    contract_on(&cluster, "etcd x1");
}

#[test]
fn contract_on_three_members() {
    let cluster = EtcdCluster::start(3);
    contract_on(&cluster, "etcd x3");
}

/// kill -9 one member of three, repeatedly each one: every commit keeps
/// landing (none lost: all are in the snapshot afterwards), and a restarted
/// member catches up with the others.
#[test]
fn commits_survive_a_killed_member() {
    let mut cluster = EtcdCluster::start(3);
    let kv = cluster.kv(&prefix());
    let mut written = Vec::new();
    for victim in 0..cluster.size() {
        cluster.kill9(victim);
        let t = Instant::now();
        let mut slowest = Duration::ZERO;
        for n in 0..20 {
            let key = format!("m{victim}/{n}");
            let one = Instant::now();
            commit_now(&kv, &[put(&key, "v")]);
            slowest = slowest.max(one.elapsed());
            written.push(key);
        }
        eprintln!(
            "20 commits with member m{victim} dead: {:?} (slowest {slowest:?})",
            t.elapsed()
        );
        cluster.restart(victim);
        cluster.wait_healthy(Duration::from_secs(30));
        // Caught up: its own applied revision reaches the cluster's.
        let target = kv.snapshot().unwrap().0;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let at = cluster.member_revision(victim);
            if at.is_some_and(|r| r >= target) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "restarted m{victim} at {at:?}, cluster at {target}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let (_, entries) = kv.snapshot().unwrap();
    for key in &written {
        assert!(
            entries.iter().any(|e| &e.key == key),
            "acknowledged {key} is missing"
        );
    }
}

/// A member cut off by a link that goes down (its packets vanish: no
/// reset, no refusal, the case that hangs a client without timeouts):
/// commits keep landing, each within the store's deadline.
#[test]
fn commits_survive_a_cut_off_member() {
    let cluster = EtcdCluster::start(3);
    let kv = cluster.kv(&prefix());
    commit_now(&kv, &[put("before", "v")]);
    cluster
        .member(0)
        .exec_ok(&["ip", "link", "set", "eth0", "down"]);
    let t = Instant::now();
    let mut slowest = Duration::ZERO;
    for n in 0..20 {
        let one = Instant::now();
        commit_now(&kv, &[put(&format!("cut/{n}"), "v")]);
        slowest = slowest.max(one.elapsed());
    }
    eprintln!(
        "20 commits with m0 cut off: {:?} (slowest {slowest:?})",
        t.elapsed()
    );
    let (_, entries) = kv.snapshot().unwrap();
    assert_eq!(
        entries.iter().filter(|e| e.key.starts_with("cut/")).count(),
        20
    );
}

/// Leadership lines from the `kv-lead` helper: (unix ms, leading).
type Lines = Arc<Mutex<Vec<(u128, bool)>>>;

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// Starts `kv-lead` on client host `client`; its lines are collected.
fn lead_helper(cluster: &EtcdCluster, client: usize, prefix: &str) -> (teardown::Proc, Lines) {
    let eps = cluster.endpoints().join(",");
    let helper = bin("kv-lead");
    let mut cmd = cluster
        .client(client)
        .cmd(&[helper.to_str().unwrap(), &eps, prefix]);
    cmd.stdout(Stdio::piped());
    let mut proc = teardown::spawn(&mut cmd).expect("start kv-lead");
    let out = proc.0.stdout.take().unwrap();
    let lines: Lines = Arc::default();
    let l = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let mut f = line.split_whitespace();
            if let (Some(t), Some(v)) = (f.next(), f.next()) {
                if let Ok(t) = t.parse() {
                    l.lock().unwrap().push((t, v == "true"));
                }
            }
        }
    });
    (proc, lines)
}

fn helper_leads(lines: &Lines, within: Duration) {
    let t = Instant::now();
    while !lines.lock().unwrap().iter().any(|&(_, l)| l) {
        assert!(t.elapsed() < within, "kv-lead never led");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The first time (unix ms) `kv` leads, polled every 20 ms.
fn first_lead(kv: &dyn Kv, within: Duration) -> u128 {
    let t = Instant::now();
    loop {
        if kv.lead().unwrap() {
            return unix_ms();
        }
        assert!(t.elapsed() < within, "no takeover within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The leader's process is killed with SIGKILL (no resignation): another
/// store leads within a few seconds, and only after the dead one's last
/// "true".
#[test]
fn lead_passes_on_when_the_holder_is_killed() {
    let cluster = EtcdCluster::start(3);
    let p = prefix();
    let (proc, lines) = lead_helper(&cluster, 0, &p);
    helper_leads(&lines, Duration::from_secs(10));
    let kv = cluster.kv(&p);
    assert!(!kv.lead().unwrap());
    let killed = unix_ms();
    drop(proc);
    let took = first_lead(&kv, Duration::from_secs(10));
    let last_true = lines
        .lock()
        .unwrap()
        .iter()
        .filter(|&&(_, l)| l)
        .map(|&(t, _)| t)
        .max()
        .unwrap();
    eprintln!("takeover {} ms after kill -9 of the leader", took - killed);
    assert!(
        took > last_true,
        "new leader at {took} before old one's last true at {last_true}"
    );
}

/// The leader is cut off from the cluster but keeps running and asking:
/// it must say false before anyone else says true.
#[test]
fn lead_never_two_when_the_holder_is_cut_off() {
    let mut cluster = EtcdCluster::start(3);
    let other = cluster.add_client();
    let p = prefix();
    let (_proc, lines) = lead_helper(&cluster, other, &p);
    helper_leads(&lines, Duration::from_secs(10));
    let kv = cluster.kv(&p);
    assert!(!kv.lead().unwrap());
    let cut = unix_ms();
    cluster
        .client(other)
        .exec_ok(&["ip", "link", "set", "eth0", "down"]);
    let took = first_lead(&kv, Duration::from_secs(15));
    // Let the cut-off helper print a while longer: it must stay false.
    std::thread::sleep(Duration::from_millis(500));
    let lines = lines.lock().unwrap();
    let last_true = lines
        .iter()
        .filter(|&&(_, l)| l)
        .map(|&(t, _)| t)
        .max()
        .unwrap();
    let first_false = lines
        .iter()
        .filter(|&&(t, l)| t > cut && !l)
        .map(|&(t, _)| t)
        .min()
        .expect("the cut-off helper went on answering");
    eprintln!(
        "cut-off leader said false {} ms after the cut; takeover after {} ms",
        first_false - cut,
        took - cut
    );
    assert!(
        last_true < took,
        "two leaders: the cut-off one said true at {last_true}, the new one led from {took}"
    );
}
