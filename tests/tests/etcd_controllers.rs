//! Two controllers over one 3-member etcd cluster, writing at once with
//! deliberately conflicting requests: the model's invariants hold across
//! them, and no acknowledged write is lost.
//!
//! CreateVpc itself may overlap other VPCs (as in AWS), so the conflicting
//! pairs are block associations: for each of 200 VPCs, controller A adds
//! 172.17.0.0/16 while controller B adds 172.17.0.0/17, both at once.
//! Exactly one of each pair may land (the other is CidrConflict).

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use ipnet::Ipv4Net;
use peering_tests::etcd::{in_netns, EtcdCluster};
use peering_userspace::api::daemon::open_store_url;
use peering_userspace::control::controller::Controller;
use peering_userspace::control::store::url::StoreUrl;
use peering_userspace::control::{AccountId, Call, RngIds, Store, StoreError};

const REGION: &str = "r1";
const PAIRS: usize = 200;
/// Writer threads per controller (the machine has two cores).
const THREADS: usize = 4;

fn controller(cluster: &EtcdCluster, prefix: &str) -> Controller {
    let url = StoreUrl::Etcd {
        endpoints: cluster.endpoints(),
        prefix: prefix.to_owned(),
    };
    // As `peering-controld serve --store etcd://...` opens it.
    in_netns(cluster.client(0), move || {
        open_store_url(&url, &[REGION.to_owned()]).map_err(|e| format!("{e:#}"))
    })
    .expect("open etcd store")
}

/// (controller, vpc index, the VPC id or the error code).
type Outcome = (char, usize, Result<String, String>);

fn call(account: &AccountId) -> Call {
    Call::at(account.clone(), REGION, 1_700_000_000)
}

#[test]
fn two_controllers_keep_cidrs_disjoint() {
    let cluster = EtcdCluster::start(3);
    let prefix = format!("/{}/", peering_tests::lab::unique("ctl"));
    let a = Arc::new(controller(&cluster, &prefix));
    let b = Arc::new(controller(&cluster, &prefix));
    let account = AccountId::parse("111122223333").unwrap();

    // The VPCs, created half through each controller.
    let mut ids = RngIds::from_os();
    let vpcs: Vec<String> = (0..PAIRS)
        .map(|i| {
            let c = if i % 2 == 0 { &a } else { &b };
            let (d, _) = c
                .transact(|s| s.create_vpc(&call(&account), &mut ids, "172.16.0.0/16"))
                .expect("create-vpc");
            d.vpc_id
        })
        .collect();
    let vpcs = Arc::new(vpcs);

    let results: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let t = Instant::now();
    let mut threads = Vec::new();
    for (name, ctl, block) in [('a', &a, "172.17.0.0/16"), ('b', &b, "172.17.0.0/17")] {
        for th in 0..THREADS {
            let (ctl, vpcs, results, account) =
                (ctl.clone(), vpcs.clone(), results.clone(), account.clone());
            threads.push(std::thread::spawn(move || {
                for i in (th..PAIRS).step_by(THREADS) {
                    let r = ctl
                        .transact(|s| s.associate_vpc_cidr_block(&call(&account), &vpcs[i], block));
                    let r = match r {
                        Ok((d, _)) => Ok(d.vpc_id),
                        Err(StoreError::Api(e)) => Err(e.code().to_string()),
                        Err(e) => Err(format!("store: {e}")),
                    };
                    results.lock().unwrap().push((name, i, r));
                }
            }));
        }
    }
    for t in threads {
        t.join().unwrap();
    }
    eprintln!(
        "{} conflicting associations through two controllers in {:?}",
        2 * PAIRS,
        t.elapsed()
    );

    let results = results.lock().unwrap();
    let mut winners: Vec<Option<char>> = vec![None; PAIRS];
    for (name, i, r) in results.iter() {
        match r {
            Ok(_) => {
                assert!(
                    winners[*i].is_none(),
                    "both controllers added a block to vpc {i}"
                );
                winners[*i] = Some(*name);
            }
            Err(code) => assert_eq!(code, "CidrConflict", "vpc {i} via {name}: {code}"),
        }
    }

    // What a third controller reads from the cluster afterwards.
    let c = controller(&cluster, &prefix);
    let state = c.load().unwrap();
    let described = state.describe_vpcs(&call(&account), &[]).unwrap();
    assert_eq!(described.len(), PAIRS, "acknowledged VPCs missing");
    for (i, id) in vpcs.iter().enumerate() {
        let d = described
            .iter()
            .find(|d| &d.vpc_id == id)
            .expect("vpc exists");
        let blocks: Vec<Ipv4Net> = d
            .cidr_block_association_set
            .iter()
            .map(|c| c.cidr_block.parse().unwrap())
            .collect();
        let want = match winners[i] {
            Some('a') => "172.17.0.0/16",
            Some(_) => "172.17.0.0/17",
            None => panic!("neither association to vpc {i} landed: {results:?}"),
        };
        assert_eq!(blocks.len(), 2, "vpc {i}: {blocks:?}");
        assert_eq!(
            blocks[1].to_string(),
            want,
            "vpc {i}: the acknowledged block"
        );
        for (x, p) in blocks.iter().enumerate() {
            for q in &blocks[x + 1..] {
                assert!(
                    !p.contains(q) && !q.contains(p),
                    "vpc {i}: {p} overlaps {q}"
                );
            }
        }
    }
}

/// `peering-controld serve --store etcd://...` on a client host: it opens
/// the cluster, seeds the configuration and answers HTTP (an unauthenticated
/// call is refused with the API's JSON error).
#[test]
fn controld_serves_over_etcd() {
    let cluster = EtcdCluster::start(1);
    let url = format!(
        "etcd://{}/{}",
        cluster.endpoints().join(","),
        peering_tests::lab::unique("d")
    );
    // Loopback of the client namespace: plain HTTP is only served there
    // (a lab address would need TLS).
    let listen = "127.0.0.1:7780";
    let mut cmd = cluster.client(0).cmd(&[
        peering_tests::lab::bin("peering-controld")
            .to_str()
            .unwrap(),
        "serve",
        "--store",
        &url,
        "--listen",
        listen,
        "--regions",
        REGION,
    ]);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _daemon = peering_tests::teardown::spawn(&mut cmd).expect("start peering-controld");
    let answer = in_netns(cluster.client(0), move || {
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(2)))
            .build()
            .into();
        loop {
            let r = agent
                .post(&format!("http://{listen}/v1/DescribeVpcs"))
                .header("Authorization", "Bearer nope")
                .content_type("application/json")
                .send("{}");
            if let Ok(mut r) = r {
                return (
                    r.status().as_u16(),
                    r.body_mut().read_to_string().unwrap_or_default(),
                );
            }
            assert!(Instant::now() < deadline, "peering-controld did not answer");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    });
    assert!(matches!(answer.0, 401 | 403), "{answer:?}");
    // The daemon seeded the deployment's configuration in etcd.
    let prefix = url.rsplit('/').next().unwrap();
    let keys = cluster.etcdctl(&[
        "get",
        "--prefix",
        "--keys-only",
        &format!("/{prefix}/data/"),
    ]);
    assert!(
        !keys.trim().is_empty(),
        "nothing stored under /{prefix}/data/"
    );
}
