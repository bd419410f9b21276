//! Graceful shutdown under load: no acknowledged request is lost (the ledger's feed, which
//! the binary runs beside the server, then records every one), and a request that would
//! outlast the drain timeout does not hold the shutdown up.

use std::time::Duration;

use bridge_genesis::bus::HistoryQuery;
use bridge_server::LedgerAccess;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::harness::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_load_loses_no_acknowledged_event() {
    let h = Harness::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/genesis/events", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(bridge_server::serve(
        listener,
        h.state.clone(),
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(10),
    ));

    let client = crate::harness::http_client();
    let mut senders = Vec::new();
    for i in 0..400u32 {
        let client = client.clone();
        let url = url.clone();
        let token = h.operator.clone();
        senders.push(tokio::spawn(async move {
            // Spread the load over the shutdown.
            tokio::time::sleep(Duration::from_millis(u64::from(i % 100))).await;
            let response = client
                .post(&url)
                .header("authorization", format!("Bearer {token}"))
                .json(&json!({"topic": "deploy.render", "payload": {"i": i}}))
                .send()
                .await
                .ok()?;
            if response.status() != 201 {
                return None;
            }
            let body: Value = response.json().await.ok()?;
            body["_genesis_seq"].as_u64()
        }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.send(()).unwrap();
    let mut acknowledged = Vec::new();
    for s in senders {
        if let Some(seq) = s.await.unwrap() {
            acknowledged.push(seq);
        }
    }
    tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .expect("serve returns after draining")
        .unwrap()
        .unwrap();
    assert!(
        !acknowledged.is_empty(),
        "some requests were answered before the shutdown"
    );

    let stored: Vec<u64> = h
        .state
        .bus()
        .history(HistoryQuery::default().limit(10_000))
        .await
        .unwrap()
        .iter()
        .filter(|e| e.topic == "deploy.render")
        .map(|e| e.seq)
        .collect();
    for seq in &acknowledged {
        assert!(
            stored.contains(seq),
            "acknowledged event {seq} is not in the store"
        );
    }
    // The ledger feed's last run (the workers' finish): every acknowledged deploy event is
    // an entry.
    let access = LedgerAccess::sqlite(
        h.dir.path().join("ledger.db"),
        "bridge.test/ledger",
        ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]),
    );
    bridge_genesis::feed::record_pending(
        h.state.bus(),
        bridge_genesis::feed::DEFAULT_LEDGER_TOPICS,
        {
            let access = access.clone();
            move || access.open()
        },
    )
    .await
    .unwrap();
    let ledger = access.open().unwrap();
    let in_ledger: Vec<u64> = ledger
        .entries(0..ledger.len())
        .unwrap()
        .iter()
        .filter_map(|e| e.seq)
        .collect();
    for seq in &acknowledged {
        assert!(
            in_ledger.contains(seq),
            "acknowledged event {seq} is not in the ledger"
        );
    }
}

/// An apply that would run past the drain timeout does not keep `serve` running: it returns
/// within the timeout, saying requests were cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_longer_than_the_drain_timeout_does_not_hold_up_shutdown() {
    let h = Harness::new().await;
    h.place("render").set_apply_delay(Duration::from_secs(30));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/envsync/apply/render",
        listener.local_addr().unwrap()
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(bridge_server::serve(
        listener,
        h.state.clone(),
        async move {
            let _ = stopped.await;
        },
        Duration::from_millis(500),
    ));
    let client = crate::harness::http_client();
    let token = h.operator.clone();
    let slow = tokio::spawn(async move {
        client
            .post(&url)
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
    });
    while h
        .place("render")
        .active
        .load(std::sync::atomic::Ordering::SeqCst)
        == 0
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let began = std::time::Instant::now();
    stop.send(()).unwrap();
    let drained = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns within the drain timeout")
        .unwrap()
        .unwrap();
    assert_eq!(drained, bridge_server::Drained::TimedOut);
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
    slow.abort();
}
