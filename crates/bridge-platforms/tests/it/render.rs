//! Render specifics: per-key writes for one change, the bulk replace for several (keeping
//! keys outside the plan), both forms of `Ratelimit-Reset`, and the empty-value rule.

use std::time::Duration;

use bridge_core::diff::{Change, SyncPlan};
use bridge_platforms::HttpOptions;

use crate::support::{Env, Recorder, Which, apply, creates, deletes, map, op, updates};

#[tokio::test]
async fn one_change_uses_the_key_route_and_several_the_bulk_replace() {
    let env = Env::start(Which::Render).await;
    let render = env.emulators.render().expect("render");
    let platform = env.open("render");
    apply(
        platform.as_ref(),
        &creates(&[("A", "1")]),
        &Recorder::default(),
    )
    .await
    .expect("one create");
    let stats = render.stats();
    assert_eq!(
        stats
            .by_route
            .get("PUT /v1/services/{serviceId}/env-vars/{envVarKey}"),
        Some(&1)
    );
    assert_eq!(
        stats.by_route.get("PUT /v1/services/{serviceId}/env-vars"),
        None
    );

    // A few changes go key by key, touching nothing else.
    render.set_var("DASHBOARD", "kept");
    render.reset_stats();
    let progress = Recorder::default();
    let mut ops = creates(&[("B", "2"), ("C", "3")]);
    ops.extend(updates(&[("A", "one")]));
    let report = apply(platform.as_ref(), &ops, &progress)
        .await
        .expect("per key");
    assert_eq!(report.writes, 3);
    assert_eq!(progress.keys(), ["B", "C", "A"]);
    let stats = render.stats();
    assert_eq!(
        stats
            .by_route
            .get("PUT /v1/services/{serviceId}/env-vars/{envVarKey}"),
        Some(&3)
    );
    assert_eq!(
        render.vars(),
        map(&[("A", "one"), ("B", "2"), ("C", "3"), ("DASHBOARD", "kept")])
    );

    // Many changes go in one bulk replace that sends back keys outside the plan unchanged
    // (DASHBOARD was changed in the dashboard after our last write, before the read).
    render.set_var("DASHBOARD", "kept-2");
    render.reset_stats();
    let progress = Recorder::default();
    let many: Vec<(String, String)> = (0..12)
        .map(|i| (format!("K{i:02}"), format!("v{i}")))
        .collect();
    let many_refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let report = apply(platform.as_ref(), &creates(&many_refs), &progress)
        .await
        .expect("bulk");
    assert_eq!(report.writes, 12);
    let stats = render.stats();
    assert_eq!(
        stats.by_route.get("PUT /v1/services/{serviceId}/env-vars"),
        Some(&1)
    );
    assert_eq!(stats.requests, 2, "{:?}", stats.by_route);
    assert_eq!(render.vars()["DASHBOARD"], "kept-2");
    assert_eq!(render.vars()["K11"], "v11");
    for i in 0..12 {
        render.remove_var(&format!("K{i:02}"));
    }

    // A single delete of something already gone is not an error.
    render.remove_var("C");
    let current = crate::support::split(&platform.read().await.expect("read")).0;
    assert!(!current.contains_key("C"));
    let stale: bridge_platforms::RemoteSet = [(
        "C".to_string(),
        bridge_platforms::RemoteValue::Readable("3".into()),
    )]
    .into_iter()
    .collect();
    crate::support::apply_on(
        platform.as_ref(),
        &deletes(&["C"]),
        &stale,
        &Recorder::default(),
    )
    .await
    .expect("deleting a missing key");
}

#[tokio::test]
async fn both_forms_of_ratelimit_reset_are_honoured() {
    let env = Env::start(Which::Render).await;
    let render = env.emulators.render().expect("render");
    let options = HttpOptions {
        max_attempts: 8,
        base_delay: Duration::from_millis(20),
        max_wait: Duration::from_millis(1_500),
        ..HttpOptions::default()
    };
    let platform = env.open_with("render", &options);
    for epoch in [false, true] {
        render.set_ratelimit_reset_epoch(epoch);
        render.set_rate_limit(Some(3));
        for i in 0..4 {
            let key = format!("K{i}");
            apply(
                platform.as_ref(),
                &updates(&[(&key, "v")]),
                &Recorder::default(),
            )
            .await
            .expect("write under the limit");
        }
        render.set_rate_limit(None);
    }
    assert_eq!(render.vars().len(), 4);
}

#[tokio::test]
async fn empty_values_are_caught_before_writing() {
    let env = Env::start(Which::Render).await;
    let platform = env.open("render");
    let plan = SyncPlan {
        ops: vec![
            op("EMPTY", Change::Create, Some("")),
            op("FULL", Change::Create, Some("x")),
        ],
        ..SyncPlan::default()
    };
    let violations = platform.check_rules(&plan);
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].key, "EMPTY");
    assert!(violations[0].rule.contains("empty"));
}
