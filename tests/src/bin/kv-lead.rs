//! `kv-lead ENDPOINTS PREFIX`: campaigns with `Kv::lead` on an etcd store
//! and prints `<unix ms> <true|false>` every 20 ms until killed. Tests run
//! it in a client namespace to kill or cut off a leader that is a process
//! of its own. Against a TLS-only cluster, `PEERING_ETCD_CACERT`,
//! `PEERING_ETCD_CERT` and `PEERING_ETCD_KEY` name the files, as for
//! `peering-controld`.

use std::{
    io::Write,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use peering_userspace::control::store::etcd::tls::{EtcdTls, EtcdTlsFiles};
use peering_userspace::control::store::etcd::{EtcdKv, EtcdOptions};
use peering_userspace::control::store::kv::Kv;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, endpoints, prefix] = args.as_slice() else {
        eprintln!("usage: kv-lead HOST:PORT[,HOST:PORT...] PREFIX");
        std::process::exit(2);
    };
    let endpoints: Vec<String> = endpoints.split(',').map(str::to_owned).collect();
    let env = |name| std::env::var_os(name).map(std::path::PathBuf::from);
    let files = EtcdTlsFiles {
        cacert: env("PEERING_ETCD_CACERT"),
        cert: env("PEERING_ETCD_CERT"),
        key: env("PEERING_ETCD_KEY"),
    };
    // A test helper: plain gRPC to the lab's addresses stays allowed.
    let tls = match files.is_empty() {
        true => None,
        false => EtcdTls::load(&endpoints, &files).unwrap_or_else(|e| {
            eprintln!("kv-lead: {e}");
            std::process::exit(1);
        }),
    };
    let opts = EtcdOptions {
        tls,
        ..EtcdOptions::default()
    };
    let kv = match EtcdKv::connect(&endpoints, prefix, opts) {
        Ok(kv) => kv,
        Err(e) => {
            eprintln!("kv-lead: {e}");
            std::process::exit(1);
        }
    };
    let mut out = std::io::stdout();
    loop {
        let leads = kv.lead().unwrap_or(false);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        if writeln!(out, "{now} {leads}")
            .and_then(|_| out.flush())
            .is_err()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
