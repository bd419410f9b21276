//! Several instances per emulator: Render services, Netlify sites and GitHub
//! repositories created at start keep separate state behind the same routes,
//! and an id the emulator does not hold answers the platform's real 404.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::github::seal;
use crate::{client, start_with};

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn render_services_keep_separate_vars_and_deploys() {
    let emu = start_with(true, false, false, |c| {
        c.render_services = ids(&["srv-prod", "srv-stg"]);
    })
    .await;
    let render = emu.render().unwrap();
    assert_eq!(
        render.service_ids(),
        ["srv-emulator", "srv-prod", "srv-stg"]
    );
    let c = client();
    let url = |id: &str| format!("{}/services/{id}/env-vars", render.base_url());
    for (id, value) in [("srv-prod", "prod"), ("srv-stg", "stg")] {
        let put = c
            .put(format!("{}/MODE", url(id)))
            .bearer_auth("rnd_emulator_token")
            .json(&json!({"value": value}))
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), StatusCode::OK);
    }
    let listed: Value = c
        .get(url("srv-stg"))
        .bearer_auth("rnd_emulator_token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["envVar"], json!({"key": "MODE", "value": "stg"}));
    let prod = render.service("srv-prod").unwrap();
    assert_eq!(prod.vars()["MODE"], "prod");
    assert_eq!(render.service("srv-stg").unwrap().vars()["MODE"], "stg");
    assert!(render.vars().is_empty(), "srv-emulator is untouched");

    // Deploy hooks are per service, with ids unique across services.
    let hook = c.post(prod.deploy_hook_url()).send().await.unwrap();
    assert_eq!(hook.status(), StatusCode::OK);
    c.post(render.deploy_hook_url()).send().await.unwrap();
    assert_eq!(prod.deploys().len(), 1);
    assert_eq!(render.deploys().len(), 1);
    assert_ne!(prod.deploys(), render.deploys());

    // One stats table per emulator, by route template; the write log tells the
    // services apart by path.
    let stats = render.stats();
    assert_eq!(
        stats
            .by_route
            .get("PUT /v1/services/{serviceId}/env-vars/{envVarKey}"),
        Some(&2)
    );
    let paths: Vec<String> = render.write_log().into_iter().map(|w| w.path).collect();
    assert_eq!(
        paths,
        [
            "/v1/services/srv-prod/env-vars/MODE",
            "/v1/services/srv-stg/env-vars/MODE"
        ]
    );

    // Not created at start: Render's 404, and nothing is created by asking.
    let unknown = c
        .put(format!("{}/MODE", url("srv-nope")))
        .bearer_auth("rnd_emulator_token")
        .json(&json!({"value": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        unknown.json::<Value>().await.unwrap(),
        json!({"message": "not found: srv-nope"})
    );
    assert!(render.service("srv-nope").is_none());
    let hook = c
        .post(format!(
            "{}/deploy/srv-nope?key=k",
            render.base_url().trim_end_matches("/v1")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(hook.status(), StatusCode::NOT_FOUND);

    // Added at run time, then served.
    render.add_service("srv-late").set_var("A", "1");
    let late = c
        .get(format!("{}/A", url("srv-late")))
        .bearer_auth("rnd_emulator_token")
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), StatusCode::OK);
    emu.shutdown().await;
}

#[tokio::test]
async fn netlify_sites_keep_separate_vars_in_one_account() {
    let emu = start_with(false, true, false, |c| {
        c.netlify_sites = ids(&["site-prod", "site-stg"]);
    })
    .await;
    let netlify = emu.netlify().unwrap();
    let c = client();
    let env = format!("{}/accounts/acct-emulator/env", netlify.base_url());
    for (site, value) in [("site-prod", "p"), ("site-stg", "s")] {
        let created = c
            .post(&env)
            .bearer_auth("nfp_emulator_token")
            .query(&[("site_id", site)])
            .json(&json!([{
                "key": "MODE",
                "values": [{"value": value, "context": "production"}],
            }]))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
    }
    // The same key on another site is no duplicate.
    assert_eq!(
        netlify.site("site-prod").unwrap().vars("production")["MODE"],
        "p"
    );
    assert_eq!(
        netlify.site("site-stg").unwrap().vars("production")["MODE"],
        "s"
    );
    assert!(netlify.vars("production").is_empty());
    let site_list: Value = c
        .get(format!("{}/sites/site-stg/env", netlify.base_url()))
        .bearer_auth("nfp_emulator_token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(site_list[0]["values"][0]["value"], "s");
    let deleted = c
        .delete(format!("{env}/MODE"))
        .bearer_auth("nfp_emulator_token")
        .query(&[("site_id", "site-prod")])
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert!(
        netlify
            .site("site-prod")
            .unwrap()
            .vars("production")
            .is_empty()
    );
    assert_eq!(
        netlify.site("site-stg").unwrap().vars("production").len(),
        1
    );

    for url in [
        format!("{}/sites/site-nope/env", netlify.base_url()),
        format!("{env}?site_id=site-nope"),
    ] {
        let unknown = c
            .get(&url)
            .bearer_auth("nfp_emulator_token")
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND, "{url}");
        assert_eq!(
            unknown.json::<Value>().await.unwrap(),
            json!({"code": 404, "message": "Not Found"})
        );
    }
    assert_eq!(
        netlify.site_ids(),
        ["site-emulator", "site-prod", "site-stg"]
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn github_repositories_keep_separate_environments_and_keys() {
    let emu = start_with(false, false, true, |c| {
        c.github_repositories = ids(&["org/app", "org/api"]);
    })
    .await;
    let gh = emu.github().unwrap();
    assert_eq!(gh.repositories(), ["bridge/emulated", "org/api", "org/app"]);
    let c = client();
    let token = "ghp_emulator_token";
    let mut keys = Vec::new();
    for repo in ["org/app", "org/api"] {
        for env in ["production", "staging"] {
            let base = format!("{}/repos/{repo}/environments/{env}", gh.base_url());
            let body = seal(
                &c,
                &format!("{base}/secrets/public-key"),
                &format!("{repo}:{env}"),
            )
            .await;
            keys.push(body["key_id"].clone());
            let put = c
                .put(format!("{base}/secrets/API_TOKEN"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(put.status(), StatusCode::CREATED, "{repo} {env}");
            let var = c
                .post(format!("{base}/variables"))
                .bearer_auth(token)
                .json(&json!({"name": "STAGE", "value": format!("{repo}:{env}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(var.status(), StatusCode::CREATED);
        }
        let repo_key: Value = c
            .get(format!(
                "{}/repos/{repo}/actions/secrets/public-key",
                gh.base_url()
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        keys.push(repo_key["key_id"].clone());
    }
    // Every repository and environment has a key pair of its own.
    let mut distinct = keys.clone();
    distinct.sort_by_key(Value::to_string);
    distinct.dedup();
    assert_eq!(distinct.len(), keys.len(), "{keys:?}");
    let (app, api) = (
        gh.repository("org/app").unwrap(),
        gh.repository("org/api").unwrap(),
    );
    assert_ne!(app.public_key(None), api.public_key(None));
    assert_ne!(app.public_key(None), gh.public_key(None));

    for (repo, view) in [("org/app", &app), ("org/api", &api)] {
        for env in ["production", "staging"] {
            let expected = format!("{repo}:{env}");
            assert_eq!(view.secrets(Some(env))["API_TOKEN"], expected);
            assert_eq!(view.variables(Some(env))["STAGE"], expected);
        }
        assert!(view.secrets(None).is_empty());
    }
    assert!(gh.secrets(Some("production")).is_empty());

    // A key id of one repository does not seal for another.
    let app_key = format!("{}/repos/org/app/actions/secrets/public-key", gh.base_url());
    let sealed_for_app = seal(&c, &app_key, "x").await;
    let wrong = c
        .put(format!("{}/repos/org/api/actions/secrets/X", gh.base_url()))
        .bearer_auth(token)
        .json(&sealed_for_app)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Case-insensitive like GitHub; unknown repositories answer GitHub's 404.
    let upper = c
        .get(format!("{}/repos/ORG/App/actions/variables", gh.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(upper.status(), StatusCode::OK);
    let unknown = c
        .get(format!(
            "{}/repos/org/nope/environments/production/secrets",
            gh.base_url()
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["message"], "Not Found");
    assert!(body["documentation_url"].is_string());
    assert!(gh.repository("org/nope").is_none());

    // Pull requests are per repository, with its own URLs.
    let pr: Value = c
        .post(format!("{}/repos/org/app/pulls", gh.base_url()))
        .bearer_auth(token)
        .json(&json!({"title": "t", "head": "b", "base": "main"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pr["number"], 1);
    assert!(
        pr["html_url"]
            .as_str()
            .unwrap()
            .ends_with("/org/app/pull/1")
    );
    assert_eq!(pr["head"]["label"], "org:b");
    assert_eq!(app.pulls().len(), 1);
    assert!(gh.pulls().is_empty());
    emu.shutdown().await;
}

#[tokio::test]
async fn invalid_ids_are_refused_at_start() {
    for tweak in [
        (|c: &mut bridge_emulators::EmulatorConfig| c.render_services = ids(&["srv/x"]))
            as fn(&mut bridge_emulators::EmulatorConfig),
        |c| c.netlify_sites = ids(&[""]),
        |c| c.github_repositories = ids(&["just-a-name"]),
        |c| c.github_repositories = ids(&["a/b/c"]),
    ] {
        let mut config = bridge_emulators::EmulatorConfig::default();
        tweak(&mut config);
        let err = bridge_emulators::start(config).await.unwrap_err();
        assert!(
            matches!(err, bridge_emulators::EmulatorError::InvalidId { .. }),
            "{err}"
        );
    }
}
