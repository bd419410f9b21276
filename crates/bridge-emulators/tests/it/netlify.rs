//! Netlify: bulk create, per-context values, hidden secret values, updates
//! and deletes through the Envelope API.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{client, export, start_with};

const TOKEN: &str = "nfp_emulator_token";

fn env_url(emu: &bridge_emulators::Emulators) -> String {
    format!(
        "{}/accounts/{}/env",
        export(emu, "NETLIFY_API_URL"),
        export(emu, "NETLIFY_ACCOUNT_ID")
    )
}

fn site() -> [(&'static str, &'static str); 1] {
    [("site_id", "site-emulator")]
}

#[tokio::test]
async fn requires_auth_and_known_ids() {
    let emu = start_with(false, true, false, |_| {}).await;
    let c = client();
    let resp = c.get(env_url(&emu)).query(&site()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"code": 401, "message": "Access Denied"})
    );
    let other_site = c
        .get(env_url(&emu))
        .bearer_auth(TOKEN)
        .query(&[("site_id", "site-other")])
        .send()
        .await
        .unwrap();
    assert_eq!(other_site.status(), StatusCode::NOT_FOUND);
    assert_eq!(other_site.json::<Value>().await.unwrap()["code"], 404);
    let other_account = c
        .get(format!(
            "{}/accounts/acct-other/env",
            export(&emu, "NETLIFY_API_URL")
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(other_account.status(), StatusCode::NOT_FOUND);
    emu.shutdown().await;
}

#[tokio::test]
async fn bulk_create_contexts_secrets_and_delete() {
    let emu = start_with(false, true, false, |_| {}).await;
    let netlify = emu.netlify().unwrap();
    let c = client();
    let url = env_url(&emu);

    let created = c
        .post(&url)
        .bearer_auth(TOKEN)
        .query(&site())
        .json(&json!([
            {"key": "API_URL", "values": [
                {"value": "https://prod", "context": "production"},
                {"value": "https://any", "context": "all"}
            ]},
            {"key": "TOKEN", "is_secret": true, "values": [
                {"value": "s3cret", "context": "production"},
                {"value": "local", "context": "dev"}
            ]}
        ]))
        .send()
        .await
        .unwrap();
    // Secrets may not use the dev context under the enforced CLI rules.
    assert_eq!(created.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(netlify.vars("production").is_empty(), "nothing created");

    let created = c
        .post(&url)
        .bearer_auth(TOKEN)
        .query(&site())
        .json(&json!([
            {"key": "API_URL", "values": [
                {"value": "https://prod", "context": "production"},
                {"value": "https://any", "context": "all"}
            ]},
            {"key": "TOKEN", "is_secret": true, "values": [
                {"value": "s3cret", "context": "production"},
                {"value": "preview", "context": "deploy-preview"}
            ]}
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let body: Vec<Value> = created.json().await.unwrap();
    assert_eq!(body.len(), 2);
    assert_eq!(body[0]["key"], "API_URL");
    assert!(body[0]["values"][0]["id"].is_string());
    assert!(body[0]["updated_at"].is_string());
    assert!(body[0]["updated_by"].is_object());
    assert_eq!(body[1]["is_secret"], true);
    assert_eq!(body[1]["values"][0]["value"], "");

    assert_eq!(netlify.vars("production")["API_URL"], "https://prod");
    assert_eq!(netlify.vars("deploy-preview")["API_URL"], "https://any");
    assert_eq!(netlify.vars("production")["TOKEN"], "s3cret");
    assert_eq!(netlify.is_secret("TOKEN"), Some(true));
    assert_eq!(netlify.is_secret("API_URL"), Some(false));
    assert_eq!(netlify.is_secret("NOPE"), None);

    // Secret values are not readable back through the API.
    let listed: Vec<Value> = c
        .get(&url)
        .bearer_auth(TOKEN)
        .query(&site())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = listed.iter().find(|v| v["key"] == "TOKEN").unwrap();
    assert!(
        token["values"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["value"] == "")
    );
    let api = listed.iter().find(|v| v["key"] == "API_URL").unwrap();
    assert_eq!(api["values"][0]["value"], "https://prod");
    let site_listed: Vec<Value> = c
        .get(format!(
            "{}/sites/site-emulator/env",
            export(&emu, "NETLIFY_API_URL")
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(site_listed, listed);
    let account_level: Vec<Value> = c
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(account_level.is_empty(), "site vars are not account vars");

    // Duplicate create is a conflict.
    let dup = c
        .post(&url)
        .bearer_auth(TOKEN)
        .query(&site())
        .json(&json!([{"key": "API_URL", "values": []}]))
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), StatusCode::CONFLICT);
    assert_eq!(dup.json::<Value>().await.unwrap()["code"], 409);

    // PATCH one context's value.
    let key_url = format!("{url}/API_URL");
    let patched = c
        .patch(&key_url)
        .bearer_auth(TOKEN)
        .query(&site())
        .json(&json!({"context": "branch", "context_parameter": "staging", "value": "https://staging"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::CREATED);
    let patched: Value = patched.json().await.unwrap();
    let branch = patched["values"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["context"] == "branch")
        .unwrap();
    assert_eq!(branch["context_parameter"], "staging");

    // PUT replaces all values.
    let replaced = c
        .put(&key_url)
        .bearer_auth(TOKEN)
        .query(&site())
        .json(&json!({"key": "API_URL", "values": [{"value": "https://only", "context": "all"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), StatusCode::OK);
    let replaced: Value = replaced.json().await.unwrap();
    assert_eq!(replaced["values"].as_array().unwrap().len(), 1);
    assert_eq!(netlify.vars("production")["API_URL"], "https://only");

    // Delete one value by id, then the variable.
    let value_id = replaced["values"][0]["id"].as_str().unwrap().to_owned();
    let del_value = c
        .delete(format!("{key_url}/value/{value_id}"))
        .bearer_auth(TOKEN)
        .query(&site())
        .send()
        .await
        .unwrap();
    assert_eq!(del_value.status(), StatusCode::NO_CONTENT);
    assert!(!netlify.vars("production").contains_key("API_URL"));
    let del = c
        .delete(&key_url)
        .bearer_auth(TOKEN)
        .query(&site())
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::NO_CONTENT);
    let gone = c
        .get(&key_url)
        .bearer_auth(TOKEN)
        .query(&site())
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_eq!(netlify.is_secret("API_URL"), None);

    let malformed = c
        .post(&url)
        .bearer_auth(TOKEN)
        .query(&site())
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(malformed.json::<Value>().await.unwrap()["code"], 400);
    emu.shutdown().await;
}

#[tokio::test]
async fn handle_set_var_and_build_hook() {
    let emu = start_with(false, true, false, |_| {}).await;
    let netlify = emu.netlify().unwrap();
    netlify.set_var("K", "all", "base", false);
    netlify.set_var("K", "production", "prod", false);
    assert_eq!(netlify.vars("production")["K"], "prod");
    assert_eq!(netlify.vars("dev")["K"], "base");
    netlify.remove_var("K");
    assert!(netlify.vars("dev").is_empty());

    let resp = client()
        .post(netlify.build_hook_url("hook123"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(netlify.builds(), ["hook123"]);
    assert!(resp.headers().contains_key("x-ratelimit-reset"));
    emu.shutdown().await;
}
