//! Bad bodies, content types, queries, paths and methods get a 4xx with a JSON reason, never
//! a 5xx.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bridge_server::ServerOptions;
use serde_json::json;

use crate::harness::{Harness, request};

fn raw(h: &Harness, content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::builder()
        .method("POST")
        .uri("/genesis/events")
        .header("authorization", format!("Bearer {}", h.operator));
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    b.body(body.into()).unwrap()
}

#[tokio::test]
async fn bad_bodies_are_4xx_with_a_reason() {
    let h = Harness::new().await;
    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (
            raw(&h, Some("application/json"), "{not json"),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            raw(&h, Some("application/json"), ""),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            raw(&h, Some("text/plain"), r#"{"topic":"a.b","payload":{}}"#),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            raw(&h, None, r#"{"topic":"a.b","payload":{}}"#),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            raw(&h, Some("application/json"), r#"{"topic":"a.b"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
        ),
        (
            raw(
                &h,
                Some("application/json"),
                r#"{"topic":"a.b","payload":[1]}"#,
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
        ),
        (
            raw(
                &h,
                Some("application/json"),
                r#"{"topic":"a.b","payload":{},"extra":1}"#,
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
        ),
        (
            raw(&h, Some("application/json"), r#"[1,2]"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
        ),
        (
            raw(
                &h,
                Some("application/json"),
                r#"{"topic":"bad topic!","payload":{}}"#,
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
        ),
        (
            raw(
                &h,
                Some("application/json"),
                r#"{"topic":"a.b","payload":{"_genesis_seq":1}}"#,
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
        ),
    ];
    for (i, (req, want, code)) in cases.into_iter().enumerate() {
        let (status, body) = h.call(req).await;
        assert_eq!(status, want, "case {i}: {body}");
        assert_eq!(body["error"], code, "case {i}");
        assert!(!body["detail"].as_str().unwrap().is_empty());
    }
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let h = Harness::with_options(ServerOptions {
        max_body_bytes: 1024,
        ..ServerOptions::default()
    })
    .await;
    let big = json!({"topic": "deploy.render", "payload": {"pad": "x".repeat(4096)}});
    let (status, body) = h
        .call(raw(&h, Some("application/json"), big.to_string()))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"], "payload_too_large");
}

#[tokio::test]
async fn an_oversized_body_to_a_route_that_takes_none_is_413_and_nothing_runs() {
    let h = Harness::new().await;
    let before = h.place("render").keys();
    let ten_mb = 10 * 1024 * 1024;
    let apply = |body: Body, length: Option<usize>| {
        let mut b = Request::builder()
            .method("POST")
            .uri("/envsync/apply/render")
            .header("authorization", format!("Bearer {}", h.operator));
        if let Some(n) = length {
            b = b.header("content-length", n.to_string());
        }
        b.body(body).unwrap()
    };
    let chunks = (0..160).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 64 * 1024]));
    for (what, req) in [
        (
            "stated",
            apply(Body::from(vec![b'x'; ten_mb]), Some(ten_mb)),
        ),
        (
            "streamed",
            apply(Body::from_stream(futures_util::stream::iter(chunks)), None),
        ),
    ] {
        let (status, body) = h.call(req).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{what}: {body}");
        assert_eq!(body["error"], "payload_too_large", "{what}");
    }
    assert_eq!(h.place("render").keys(), before, "an apply ran");
    let (_, page) = h
        .call(request(
            "GET",
            "/genesis/events?topic=envsync.%3E",
            Some(&h.observer),
            None,
        ))
        .await;
    assert_eq!(page["count"], 0, "{page}");
    // A small body (or none) is still ignored and the apply runs.
    let (status, body) = h.call(apply(Body::from("{}"), Some(2))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(h.place("render").keys().contains(&"API_KEY".to_owned()));
}

#[tokio::test]
async fn bad_queries_paths_and_methods_are_4xx_json() {
    let h = Harness::new().await;
    let obs = Some(h.observer.as_str());
    for uri in [
        "/genesis/events?limit=abc",
        "/genesis/events?limit=0",
        "/genesis/events?limit=99999999",
        "/genesis/events?since=-1",
        "/genesis/events?topic=a..b",
        "/genesis/events?order=sideways",
        "/genesis/events?from=yesterday",
        "/ledger/entries?limit=0",
        "/ledger/consistency?from=1",
        "/genesis/stream?topic=a..b",
        "/genesis/stream?since=x",
    ] {
        let (status, body) = h.call(request("GET", uri, obs, None)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(body["error"], "bad_request", "{uri}");
    }
    let mut req = request("GET", "/genesis/stream", obs, None);
    req.headers_mut()
        .insert("last-event-id", "not-a-number".parse().unwrap());
    let (status, _) = h.call(req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, body) = h.call(request("GET", "/nope", obs, None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
    let (status, body) = h
        .call(request("DELETE", "/genesis/events", obs, None))
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"], "method_not_allowed");
    let (status, _) = h
        .call(request("GET", "/envsync/apply-all", obs, None))
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    // Malformed Authorization headers are 401, not 500.
    let req = Request::builder()
        .uri("/genesis/stats")
        .header("authorization", "Basic dXNlcjpwYXNz")
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.call(req).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn every_error_the_framework_makes_is_json_too() {
    let h = Harness::new().await;
    let op = Some(h.operator.as_str());
    for (method, uri) in [
        ("POST", "/envsync/apply/%FF"),
        ("POST", "/envsync/dry-run/%C3%28"),
        ("GET", "/ledger/proof/not-a-number"),
        ("GET", "/ledger/proof/%FF"),
        ("POST", "/webhooks/deployment/%FF"),
    ] {
        let response = h.send(request(method, uri, op, None)).await;
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert!(status.is_client_error(), "{uri}: {status}");
        assert_eq!(
            content_type.as_deref(),
            Some("application/json"),
            "{uri}: {status} {bytes:?}"
        );
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(
            body["error"].is_string() && body["detail"].is_string(),
            "{uri}: {body}"
        );
    }
}
