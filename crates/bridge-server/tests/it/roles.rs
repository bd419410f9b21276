//! The full role × route matrix, over every route the table declares: no token or a bad one
//! is 401, a role below the route's is 403, and any role at or above it gets through (never a
//! 5xx).

use axum::http::StatusCode;
use bridge_server::Role;
use bridge_server::api::{Access, routes};

use crate::harness::{Harness, concrete};

#[tokio::test]
async fn every_route_checks_its_role() {
    let h = Harness::new().await;
    h.seed_ledger().await;
    let mut checked = 0;
    for route in routes() {
        let callers: [(&str, Option<&str>, Option<Role>); 5] = [
            ("no token", None, None),
            (
                "a bad token",
                Some("brg_0123456789abcdef0123456789abcdef01234567"),
                None,
            ),
            (
                "observer",
                Some(h.token(Role::Observer)),
                Some(Role::Observer),
            ),
            (
                "operator",
                Some(h.token(Role::Operator)),
                Some(Role::Operator),
            ),
            ("admiral", Some(h.token(Role::Admiral)), Some(Role::Admiral)),
        ];
        for (who, token, role) in callers {
            let response = h.send(concrete(route.method, route.path, token)).await;
            let status = response.status();
            let what = format!("{} {} as {who}", route.method, route.path);
            match (route.access, role) {
                (Access::Public, _) => assert!(status.is_success(), "{what}: {status}"),
                // A token is no signature: refused whoever sends it.
                (Access::Signature, _) => {
                    assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}")
                }
                (Access::Role(_), None) => {
                    assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}")
                }
                (Access::Role(needed), Some(role)) if role < needed => {
                    assert_eq!(status, StatusCode::FORBIDDEN, "{what}")
                }
                (Access::Role(_), Some(_)) => {
                    assert!(status.is_success(), "{what}: {status}")
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, routes().len() * 5);
}

#[tokio::test]
async fn the_roles_are_the_seeds() {
    let role_of = |method: &str, path: &str| {
        routes()
            .iter()
            .find(|r| r.method == method && r.path == path)
            .map(|r| r.access)
            .unwrap()
    };
    assert_eq!(role_of("GET", "/envsync/health"), Access::Public);
    assert_eq!(
        role_of("GET", "/genesis/introspection/health"),
        Access::Public
    );
    assert_eq!(role_of("GET", "/vault/secret"), Access::Role(Role::Admiral));
    assert_eq!(
        role_of("POST", "/envsync/apply-all"),
        Access::Role(Role::Operator)
    );
    assert_eq!(
        role_of("POST", "/envsync/dry-run/{provider}"),
        Access::Role(Role::Operator)
    );
    assert_eq!(role_of("GET", "/parity"), Access::Role(Role::Observer));
    assert_eq!(
        role_of("GET", "/genesis/stream"),
        Access::Role(Role::Observer)
    );
}
