//! GitHub: sealed-box secrets (201 vs 204, 422 on garbage), name rules,
//! environment scopes, variables CRUD and `link`-header pagination.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use crypto_box::PublicKey;
use crypto_box::aead::OsRng;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{client, export, start_with};

const TOKEN: &str = "ghp_emulator_token";

fn repo_url(emu: &bridge_emulators::Emulators) -> String {
    format!(
        "{}/repos/{}",
        export(emu, "GITHUB_API_URL"),
        export(emu, "GITHUB_REPOSITORY")
    )
}

/// Fetches the public key at `key_url` and seals `plaintext` with it, as a
/// real client would.
pub(crate) async fn seal(c: &reqwest::Client, key_url: &str, plaintext: &str) -> Value {
    let key: Value = c
        .get(key_url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("public-key request")
        .json()
        .await
        .expect("public-key body");
    let bytes: [u8; 32] = STANDARD
        .decode(key["key"].as_str().expect("key is a string"))
        .expect("key is base64")
        .try_into()
        .expect("key is 32 bytes");
    let sealed = PublicKey::from(bytes)
        .seal(&mut OsRng, plaintext.as_bytes())
        .expect("sealing");
    json!({"encrypted_value": STANDARD.encode(sealed), "key_id": key["key_id"]})
}

#[tokio::test]
async fn auth_schemes() {
    let emu = start_with(false, false, true, |_| {}).await;
    let url = format!("{}/actions/secrets", repo_url(&emu));
    let c = client();
    let none = c.get(&url).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert!(none.headers().contains_key("x-ratelimit-resource"));
    let body: Value = none.json().await.unwrap();
    assert_eq!(body["message"], "Bad credentials");
    assert!(body["documentation_url"].is_string());
    let token = c
        .get(&url)
        .header("authorization", format!("token {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), StatusCode::OK);
    let other_repo = c
        .get(format!(
            "{}/repos/bridge/other/actions/secrets",
            export(&emu, "GITHUB_API_URL")
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(other_repo.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        other_repo.json::<Value>().await.unwrap()["message"],
        "Not Found"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn sealed_secret_round_trip() {
    let emu = start_with(false, false, true, |_| {}).await;
    let github = emu.github().unwrap();
    let c = client();
    let base = format!("{}/actions/secrets", repo_url(&emu));
    let key_url = format!("{base}/public-key");

    let body = seal(&c, &key_url, "hunter2").await;
    let created = c
        .put(format!("{base}/DB_PASSWORD"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(created.json::<Value>().await.unwrap(), json!({}));
    assert_eq!(github.secrets(None)["DB_PASSWORD"], "hunter2");
    let stamp = github.secret_updated_at(None, "DB_PASSWORD").unwrap();
    assert_eq!(stamp.len(), 20, "{stamp}");
    assert!(stamp.ends_with('Z'));

    let body = seal(&c, &key_url, "hunter3").await;
    let updated = c
        .put(format!("{base}/DB_PASSWORD"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), StatusCode::NO_CONTENT);
    assert_eq!(github.secrets(None)["DB_PASSWORD"], "hunter3");

    let meta: Value = c
        .get(format!("{base}/DB_PASSWORD"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["name"], "DB_PASSWORD");
    assert!(meta.get("value").is_none() && meta.get("encrypted_value").is_none());
    assert!(meta["created_at"].is_string() && meta["updated_at"].is_string());

    let del = c
        .delete(format!("{base}/DB_PASSWORD"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::NO_CONTENT);
    assert!(github.secrets(None).is_empty());
    let missing = c
        .get(format!("{base}/DB_PASSWORD"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    emu.shutdown().await;
}

#[tokio::test]
async fn garbage_and_bad_names_are_422() {
    let emu = start_with(false, false, true, |_| {}).await;
    let github = emu.github().unwrap();
    let c = client();
    let base = format!("{}/actions/secrets", repo_url(&emu));
    let good = seal(&c, &format!("{base}/public-key"), "v").await;
    let key_id = good["key_id"].clone();

    let not_sealed = STANDARD.encode([7u8; 64]);
    for body in [
        json!({"encrypted_value": not_sealed, "key_id": key_id}),
        json!({"encrypted_value": "%%% not base64", "key_id": key_id}),
        json!({"encrypted_value": good["encrypted_value"], "key_id": "1"}),
        json!({"key_id": key_id}),
    ] {
        let resp = c
            .put(format!("{base}/OK_NAME"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["message"], "Validation Failed");
        assert!(err["errors"][0]["code"].is_string());
    }
    for name in ["1ABC", "GITHUB_TOKEN", "github_x", "BAD-NAME"] {
        let resp = c
            .put(format!("{base}/{name}"))
            .bearer_auth(TOKEN)
            .json(&good)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY, "{name}");
    }
    let malformed = c
        .put(format!("{base}/OK_NAME"))
        .bearer_auth(TOKEN)
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert!(github.secrets(None).is_empty());

    // Lower-case names are accepted and stored upper-cased.
    let resp = c
        .put(format!("{base}/lower_name"))
        .bearer_auth(TOKEN)
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(github.secrets(None)["LOWER_NAME"], "v");
    emu.shutdown().await;
}

#[tokio::test]
async fn environment_secrets_use_their_own_key() {
    let emu = start_with(false, false, true, |_| {}).await;
    let github = emu.github().unwrap();
    let c = client();
    // `%2F` in the environment name is decoded to `/`.
    let env_base = format!("{}/environments/prod%2Feu/secrets", repo_url(&emu));
    let repo_key = seal(
        &c,
        &format!("{}/actions/secrets/public-key", repo_url(&emu)),
        "x",
    )
    .await;
    let wrong = c
        .put(format!("{env_base}/API"))
        .bearer_auth(TOKEN)
        .json(&repo_key)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let body = seal(&c, &format!("{env_base}/public-key"), "eu-secret").await;
    let created = c
        .put(format!("{env_base}/API"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(github.secrets(Some("prod/eu"))["API"], "eu-secret");
    assert!(github.secrets(None).is_empty());
    let list: Value = c
        .get(&env_base)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["total_count"], 1);
    assert_eq!(list["secrets"][0]["name"], "API");

    // Out-of-band changes are visible and stamped.
    github.set_secret(Some("staging"), "oob", "changed");
    assert_eq!(github.secrets(Some("staging"))["OOB"], "changed");
    assert!(github.secret_updated_at(Some("staging"), "OOB").is_some());
    github.remove_secret(Some("staging"), "OOB");
    assert!(github.secrets(Some("staging")).is_empty());
    emu.shutdown().await;
}

#[tokio::test]
async fn secrets_list_paginates_with_link_header() {
    let emu = start_with(false, false, true, |c| c.page_size = Some(2)).await;
    let github = emu.github().unwrap();
    for n in ["A", "B", "C", "D", "E"] {
        github.set_secret(None, n, "v");
    }
    let c = client();
    let mut url = Some(format!("{}/actions/secrets", repo_url(&emu)));
    let mut names = Vec::new();
    let mut pages = 0;
    while let Some(u) = url.take() {
        let resp = c.get(&u).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let link = resp
            .headers()
            .get("link")
            .map(|v| v.to_str().unwrap().to_owned());
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["total_count"], 5);
        for s in body["secrets"].as_array().unwrap() {
            names.push(s["name"].as_str().unwrap().to_owned());
        }
        let link = link.expect("every page of a multi-page list has a link header");
        if pages == 0 {
            assert!(link.contains("rel=\"last\""), "{link}");
            assert!(link.contains("page=3>; rel=\"last\""), "{link}");
        }
        url = link
            .split(", ")
            .find(|p| p.ends_with("rel=\"next\""))
            .map(|p| {
                p.trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap()
                    .to_owned()
            });
        pages += 1;
        assert!(pages < 10);
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["A", "B", "C", "D", "E"]);

    let single = c
        .get(format!("{}/actions/secrets", repo_url(&emu)))
        .bearer_auth(TOKEN)
        .query(&[("per_page", "100")])
        .send()
        .await
        .unwrap();
    assert!(single.headers().get("link").is_none());
    emu.shutdown().await;
}

#[tokio::test]
async fn variables_crud() {
    let emu = start_with(false, false, true, |_| {}).await;
    let github = emu.github().unwrap();
    let c = client();
    let base = format!("{}/actions/variables", repo_url(&emu));

    let created = c
        .post(&base)
        .bearer_auth(TOKEN)
        .json(&json!({"name": "REGION", "value": "eu"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let dup = c
        .post(&base)
        .bearer_auth(TOKEN)
        .json(&json!({"name": "region", "value": "us"}))
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), StatusCode::CONFLICT);
    let bad = c
        .post(&base)
        .bearer_auth(TOKEN)
        .json(&json!({"name": "GITHUB_X", "value": "us"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let got: Value = c
        .get(format!("{base}/REGION"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["name"], "REGION");
    assert_eq!(got["value"], "eu");

    let patched = c
        .patch(format!("{base}/REGION"))
        .bearer_auth(TOKEN)
        .json(&json!({"value": "us"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::NO_CONTENT);
    assert_eq!(github.variables(None)["REGION"], "us");

    let renamed = c
        .patch(format!("{base}/REGION"))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "ZONE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), StatusCode::NO_CONTENT);
    assert_eq!(github.variables(None)["ZONE"], "us");

    let list: Value = c
        .get(&base)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["total_count"], 1);
    assert_eq!(list["variables"][0]["value"], "us");

    let del = c
        .delete(format!("{base}/ZONE"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::NO_CONTENT);
    let missing = c
        .get(format!("{base}/ZONE"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // Environment variables live apart from repository ones.
    let env_base = format!("{}/environments/staging/variables", repo_url(&emu));
    let created = c
        .post(&env_base)
        .bearer_auth(TOKEN)
        .json(&json!({"name": "MODE", "value": "test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(github.variables(Some("staging"))["MODE"], "test");
    assert!(github.variables(None).is_empty());
    github.set_variable(Some("staging"), "MODE", "changed");
    assert_eq!(github.variables(Some("staging"))["MODE"], "changed");
    github.remove_variable(Some("staging"), "MODE");
    assert!(github.variables(Some("staging")).is_empty());
    emu.shutdown().await;
}
