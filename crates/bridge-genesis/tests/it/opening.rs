//! Several processes (or threads) opening one fresh state file at once, as two `genesisctl`
//! commands started together on a new state directory do: all of them open it.

use bridge_genesis::bus::sqlite::SqliteStore;
use bridge_genesis::ledger::Ledger;

const THREADS: usize = 6;
const ROUNDS: usize = 10;

fn race<T: Send + 'static>(open: impl Fn(&std::path::Path) -> T + Send + Sync + Copy + 'static) {
    for _ in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || open(&path))
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}

#[test]
fn a_fresh_bus_file_opens_from_many_threads_at_once() {
    race(|path| SqliteStore::open(path).unwrap());
}

#[test]
fn a_fresh_ledger_file_opens_from_many_threads_at_once() {
    race(|path| Ledger::open(path, "bridge.local/ledger", None).unwrap());
}
