//! Render: auth, cursor pagination, replace-all and per-key CRUD.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{client, export, start_with};

const TOKEN: &str = "rnd_emulator_token";

#[tokio::test]
async fn requires_bearer_token() {
    let emu = start_with(true, false, false, |_| {}).await;
    let url = format!(
        "{}/services/srv-emulator/env-vars",
        export(&emu, "RENDER_API_URL")
    );
    let c = client();
    let missing = c.get(&url).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert!(missing.headers().contains_key("ratelimit-limit"));
    let body: Value = missing.json().await.unwrap();
    assert!(body["message"].is_string());
    let wrong = c.get(&url).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let ok = c.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.json::<Value>().await.unwrap(), json!([]));
    let unknown = c
        .get(format!(
            "{}/services/srv-other/env-vars",
            export(&emu, "RENDER_API_URL")
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        unknown.json::<Value>().await.unwrap(),
        json!({"message": "not found: srv-other"})
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn pagination_walks_every_key_and_ends() {
    let emu = start_with(true, false, false, |c| c.page_size = Some(2)).await;
    let render = emu.render().unwrap();
    for k in ["A", "B", "C", "D", "E"] {
        render.set_var(k, &format!("v{k}"));
    }
    let url = format!("{}/services/srv-emulator/env-vars", render.base_url());
    let c = client();
    let mut cursor: Option<String> = None;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let mut req = c.get(&url).bearer_auth(TOKEN);
        if let Some(cur) = &cursor {
            req = req.query(&[("cursor", cur)]);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let page: Vec<Value> = resp.json().await.unwrap();
        pages += 1;
        assert!(page.len() <= 2);
        if page.is_empty() {
            break;
        }
        for item in &page {
            assert!(item["cursor"].is_string());
            seen.push(item["envVar"]["key"].as_str().unwrap().to_owned());
            assert_eq!(
                item["envVar"]["value"].as_str().unwrap(),
                format!("v{}", item["envVar"]["key"].as_str().unwrap())
            );
        }
        cursor = Some(page.last().unwrap()["cursor"].as_str().unwrap().to_owned());
        assert!(pages < 10, "cursor chain does not end");
    }
    assert_eq!(seen, ["A", "B", "C", "D", "E"]);
    assert_eq!(pages, 4); // 2 + 2 + 1 + the empty page
    // An explicit limit still wins over the page-size override.
    let all: Vec<Value> = c
        .get(&url)
        .bearer_auth(TOKEN)
        .query(&[("limit", "100")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all.len(), 5);
    let bad = c
        .get(&url)
        .bearer_auth(TOKEN)
        .query(&[("limit", "101")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let bad = c
        .get(&url)
        .bearer_auth(TOKEN)
        .query(&[("cursor", "!!!")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    emu.shutdown().await;
}

#[tokio::test]
async fn replace_all_sets_the_full_set() {
    let emu = start_with(true, false, false, |_| {}).await;
    let render = emu.render().unwrap();
    render.set_var("OLD", "gone");
    let url = format!("{}/services/srv-emulator/env-vars", render.base_url());
    let c = client();
    let resp = c
        .put(&url)
        .bearer_auth(TOKEN)
        .json(&json!([
            {"key": "foo", "value": "bar"},
            {"key": "SECRET", "generateValue": true}
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Vec<Value> = resp.json().await.unwrap();
    assert_eq!(body.len(), 2);
    let vars = render.vars();
    assert_eq!(vars.len(), 2);
    assert_eq!(vars["foo"], "bar");
    assert_eq!(vars["SECRET"].len(), 44);
    let foo = body.iter().find(|i| i["envVar"]["key"] == "foo").unwrap();
    assert_eq!(foo["envVar"]["value"], "bar");
    assert!(foo["cursor"].is_string());

    for bad in [
        json!([{"key": "x", "value": ""}]),
        json!([{"key": "x"}]),
        json!([{"key": "x", "value": "v", "generateValue": true}]),
        json!({"key": "x", "value": "v"}),
    ] {
        let resp = c
            .put(&url)
            .bearer_auth(TOKEN)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let malformed = c
        .put(&url)
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("[{")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert!(malformed.json::<Value>().await.unwrap()["message"].is_string());
    assert_eq!(render.vars().len(), 2, "rejected requests change nothing");
    emu.shutdown().await;
}

#[tokio::test]
async fn per_key_crud() {
    let emu = start_with(true, false, false, |_| {}).await;
    let render = emu.render().unwrap();
    let url = format!(
        "{}/services/srv-emulator/env-vars/API_KEY",
        render.base_url()
    );
    let c = client();

    let missing = c.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let put = c
        .put(&url)
        .bearer_auth(TOKEN)
        .json(&json!({"value": "one"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    assert_eq!(
        put.json::<Value>().await.unwrap(),
        json!({"key": "API_KEY", "value": "one"})
    );
    let got: Value = c
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, json!({"key": "API_KEY", "value": "one"}));

    let empty = c
        .put(&url)
        .bearer_auth(TOKEN)
        .json(&json!({"value": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        empty.json::<Value>().await.unwrap()["message"],
        "value must not be empty"
    );

    let generated: Value = c
        .put(&url)
        .bearer_auth(TOKEN)
        .json(&json!({"generateValue": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(generated["value"], "one");
    assert_eq!(
        render.vars()["API_KEY"],
        generated["value"].as_str().unwrap()
    );

    let del = c.delete(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(del.status(), StatusCode::NO_CONTENT);
    assert!(del.bytes().await.unwrap().is_empty());
    let again = c.delete(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    assert!(render.vars().is_empty());
    emu.shutdown().await;
}

#[tokio::test]
async fn deploy_hook_records_deploys_without_auth() {
    let emu = start_with(true, false, false, |_| {}).await;
    let render = emu.render().unwrap();
    let c = client();
    let resp = c.post(render.deploy_hook_url()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    let id = body["deploy"]["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("dep-"));
    let root = render.base_url().trim_end_matches("/v1").to_owned();
    let no_key = c
        .post(format!("{root}/deploy/srv-emulator"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(render.deploys(), [id]);
    emu.shutdown().await;
}
