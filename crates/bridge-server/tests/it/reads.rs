//! A read never writes: no request an observer may make changes a place, publishes an event
//! (which a reaction could act on) or adds to the ledger.

use std::sync::atomic::Ordering;

use bridge_server::Role;
use bridge_server::api::{Access, routes};

use crate::harness::{Harness, concrete};

#[tokio::test]
async fn no_request_of_the_observer_role_writes() {
    let h = Harness::new().await;
    h.seed_ledger().await;
    let ledger = h.dir.path().join("ledger.db");
    let before = (
        h.state.bus().store().last_seq().await.unwrap(),
        std::fs::read(&ledger).unwrap(),
    );
    let mut read = 0;
    for route in routes() {
        let allowed = match route.access {
            Access::Public => true,
            Access::Role(needed) => needed <= Role::Observer,
            Access::Signature => false,
        };
        if !allowed || route.streaming {
            continue;
        }
        let response = h
            .send(concrete(
                route.method,
                route.path,
                Some(h.token(Role::Observer)),
            ))
            .await;
        assert!(
            response.status().is_success(),
            "{} {}: {}",
            route.method,
            route.path,
            response.status()
        );
        read += 1;
    }
    assert!(read >= 10, "only {read} routes were read");
    let after = (
        h.state.bus().store().last_seq().await.unwrap(),
        std::fs::read(&ledger).unwrap(),
    );
    assert_eq!(before.0, after.0, "a read published an event");
    assert!(before.1 == after.1, "a read changed the ledger");
    for place in ["local:.env", "render", "netlify"] {
        assert_eq!(
            h.place(place).applies.load(Ordering::SeqCst),
            0,
            "{place} was written"
        );
    }
}
