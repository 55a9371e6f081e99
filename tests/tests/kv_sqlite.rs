//! The `Kv` contract suite (`peering_tests::kv_contract`) on the SQLite
//! backend, each handle a separate connection to one database file, as
//! separate processes would have.

use peering_tests::kv_contract::{self, Backend};
use peering_tests::lab::TempPath;
use peering_userspace::control::store::url::{open_kv, StoreUrl};

#[test]
fn contract_on_sqlite() {
    let dir = TempPath::new("kv-sqlite");
    std::fs::create_dir_all(&dir.path).unwrap();
    let url = StoreUrl::parse(&format!("sqlite:{}", dir.path.join("kv.db").display())).unwrap();
    let open = || open_kv(&url, Vec::new).expect("open sqlite");
    kv_contract::run_all(&Backend {
        name: "sqlite",
        open: &open,
        // Its log keeps the last CHANGE_LOG_LEN revisions; not forced here.
        compact: None,
        // SqliteKv::lead is always true (one process leads a SQLite store).
        elects: false,
    });
}
