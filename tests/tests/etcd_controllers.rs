//! Two controllers over one 3-member etcd cluster, writing at once with
//! deliberately conflicting requests: the model's invariants hold across
//! them, and no acknowledged write is lost. The clusters here are TLS-only
//! with client-certificate auth, as a controller on another host must use
//! them; the last test shows what is refused, and how it is said.
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
        tls: cluster.tls_files(),
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
    let cluster = EtcdCluster::start_tls(3);
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
    let cluster = EtcdCluster::start_tls(1);
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
    cmd.args(cluster.tls_args());
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

/// `peering-controld create-account` (which opens the store as `serve`
/// does) from a client host against a TLS-only cluster with
/// `--client-cert-auth`: (exit code, stderr, seconds taken).
fn admin(cluster: &EtcdCluster, url: &str, flags: &[std::ffi::OsString]) -> (i32, String, f64) {
    let mut cmd = cluster.client(0).cmd(&[
        peering_tests::lab::bin("peering-controld")
            .to_str()
            .unwrap(),
        "create-account",
        "--account",
        "111122223333",
        "--store",
        url,
    ]);
    cmd.args(flags);
    for var in [
        "PEERING_ETCD_CACERT",
        "PEERING_ETCD_CERT",
        "PEERING_ETCD_KEY",
    ] {
        cmd.env_remove(var);
    }
    let t = Instant::now();
    let out = peering_tests::lab::run(&mut cmd);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        t.elapsed().as_secs_f64(),
    )
}

#[test]
fn what_a_tls_only_cluster_refuses_is_said_clearly() {
    let cluster = EtcdCluster::start_tls(1);
    let pki = cluster.pki().expect("TLS cluster");
    let url = format!(
        "etcd://{}/{}",
        cluster.endpoints().join(","),
        peering_tests::lab::unique("r")
    );
    let ep = &cluster.endpoints()[0];
    let flag = |f: &str, p: &std::path::Path| -> [std::ffi::OsString; 2] {
        [f.into(), p.as_os_str().to_owned()]
    };
    let ca = flag("--etcd-cacert", &pki.pki.ca);
    let cert = flag("--etcd-cert", &pki.client.0);
    let key = flag("--etcd-key", &pki.client.1);
    let other_ca = flag("--etcd-cacert", &pki.pki.other_ca);
    let cases: Vec<(&str, Vec<std::ffi::OsString>, Vec<String>)> = vec![
        (
            "no TLS flags, etcd beyond loopback",
            vec![],
            vec![
                format!("refusing to reach etcd at {ep} without TLS"),
                "--etcd-cacert".into(),
            ],
        ),
        (
            "a certificate without its key",
            [ca.clone(), cert.clone()].concat(),
            vec!["--etcd-cert needs --etcd-key".into()],
        ),
        (
            "no client certificate (etcd runs with --client-cert-auth)",
            ca.to_vec(),
            vec![
                format!("no answer from {ep}"),
                "etcd asks for a client certificate".into(),
            ],
        ),
        (
            "etcd's certificate from another CA",
            [other_ca.clone(), cert.clone(), key.clone()].concat(),
            vec![
                format!("no answer from {ep}"),
                "UnknownIssuer".into(),
                "not from the CA of --etcd-cacert".into(),
            ],
        ),
    ];
    for (what, flags, want) in cases {
        let (code, err, secs) = admin(&cluster, &url, &flags);
        println!("{what}: exit {code} after {secs:.2} s: {}", err.trim());
        assert_ne!(code, 0, "{what}: accepted");
        for w in &want {
            assert!(err.contains(w.as_str()), "{what}: {w:?} not in {err}");
        }
        // A clear error, not a hang (one connect deadline at most).
        assert!(secs < 20.0, "{what}: took {secs:.1} s");
    }
    // Nothing was written by the refused attempts; with every file, the
    // account is created.
    let prefix = url.rsplit('/').next().unwrap();
    let keys = cluster.etcdctl(&["get", "--prefix", "--keys-only", &format!("/{prefix}/")]);
    assert!(keys.trim().is_empty(), "written: {keys}");
    let (code, err, _) = admin(&cluster, &url, &[ca, cert, key].concat());
    assert_eq!(code, 0, "with the client certificate: {err}");
}
