//! The write log: every write request, in order, with its method, concrete path, key and
//! status; reads are not in it, and the stats endpoint keeps its shape.

use bridge_emulators::WriteRecord;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{client, export, start_with};

fn record(method: &str, path: &str, key: Option<&str>, status: u16) -> WriteRecord {
    WriteRecord {
        method: method.into(),
        path: path.into(),
        key: key.map(Into::into),
        status,
    }
}

#[tokio::test]
async fn logs_each_write_with_its_path_and_key() {
    let emu = start_with(true, true, true, |_| {}).await;
    let c = client();

    // Render: one key, then the bulk replace, then a delete that finds nothing.
    let render = emu.render().unwrap();
    let vars = format!("{}/services/srv-emulator/env-vars", render.base_url());
    let token = "rnd_emulator_token";
    let put = c.put(format!("{vars}/PORT")).bearer_auth(token);
    let put = put.json(&json!({"value": "8080"})).send().await.unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let bulk = c.put(&vars).bearer_auth(token);
    let bulk = bulk.json(&json!([{"key": "A", "value": "1"}])).send();
    assert_eq!(bulk.await.unwrap().status(), StatusCode::OK);
    let listed = c.get(&vars).bearer_auth(token).send().await.unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    let gone = c.delete(format!("{vars}/PORT")).bearer_auth(token).send();
    assert_eq!(gone.await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(
        render.write_log(),
        [
            record(
                "PUT",
                "/v1/services/srv-emulator/env-vars/PORT",
                Some("PORT"),
                200
            ),
            record("PUT", "/v1/services/srv-emulator/env-vars", None, 200),
            record(
                "DELETE",
                "/v1/services/srv-emulator/env-vars/PORT",
                Some("PORT"),
                404
            ),
        ]
    );

    // GitHub: the variable create names its key in the body; a refused write is logged.
    let github = emu.github().unwrap();
    let repo = format!(
        "{}/repos/{}",
        export(&emu, "GITHUB_API_URL"),
        export(&emu, "GITHUB_REPOSITORY")
    );
    let token = "ghp_emulator_token";
    let created = c
        .post(format!("{repo}/actions/variables"))
        .bearer_auth(token);
    let created = created
        .json(&json!({"name": "REGION", "value": "eu"}))
        .send();
    assert_eq!(created.await.unwrap().status(), StatusCode::CREATED);
    let patched = c.patch(format!("{repo}/actions/variables/REGION"));
    let patched = patched
        .bearer_auth(token)
        .json(&json!({"value": "us"}))
        .send();
    assert_eq!(patched.await.unwrap().status(), StatusCode::NO_CONTENT);
    let unauthorized = c.delete(format!("{repo}/actions/variables/REGION")).send();
    assert_eq!(
        unauthorized.await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        github.take_write_log(),
        [
            record(
                "POST",
                "/repos/bridge/emulated/actions/variables",
                Some("REGION"),
                201
            ),
            record(
                "PATCH",
                "/repos/bridge/emulated/actions/variables/REGION",
                Some("REGION"),
                204
            ),
            record(
                "DELETE",
                "/repos/bridge/emulated/actions/variables/REGION",
                Some("REGION"),
                401
            ),
        ]
    );
    assert!(github.write_log().is_empty(), "taking the log empties it");

    // Netlify: the create is a bulk write, without a key; the query is not in the path.
    let netlify = emu.netlify().unwrap();
    let env = format!(
        "{}/accounts/{}/env",
        export(&emu, "NETLIFY_API_URL"),
        export(&emu, "NETLIFY_ACCOUNT_ID")
    );
    let body = json!([{"key": "API_URL", "values": [{"value": "https://x", "context": "all"}]}]);
    let created = c.post(&env).bearer_auth("nfp_emulator_token");
    let created = created.query(&[("site_id", "site-emulator")]).json(&body);
    assert_eq!(created.send().await.unwrap().status(), StatusCode::CREATED);
    assert_eq!(
        netlify.write_log(),
        [record(
            "POST",
            "/api/v1/accounts/acct-emulator/env",
            None,
            201
        )]
    );

    // The stats endpoint has the shape it always had; a reset empties the log too.
    let root = render.base_url().trim_end_matches("/v1").to_owned();
    let stats: Value = c
        .get(format!("{root}/_emulator/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut fields: Vec<&str> = stats
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["by_route", "requests", "writes"]);
    assert_eq!(stats["writes"], 2);
    render.reset_stats();
    assert!(render.write_log().is_empty());
    emu.shutdown().await;
}
