use crate::sandbox::Sandbox;

#[test]
fn show_names_the_origin_of_every_value() {
    let mut s = Sandbox::new();
    s.file(
        "bridge.toml",
        "[sync]\nmode = \"enforce\"\ntargets = [\"local:p.env\"]\n",
    );
    s.env("ENVSYNC_SCHEDULE", "@daily");
    s.env("RENDER_API_TOKEN", "rnd_supersecret");
    let r = s.run(&["config", "show", "--allow-deletions"]);
    // --allow-deletions is not a `config show` flag: clap refuses it (usage error, exit 2).
    assert_eq!(r.code, 2);

    let r = s.run(&["--state-dir", "st", "config", "show", "--output", "json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let json = r.json();
    let setting = |name: &str| {
        json["settings"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no setting {name}"))
    };
    assert_eq!(setting("sync.mode")["value"], "enforce");
    assert!(
        setting("sync.mode")["origin"]
            .as_str()
            .unwrap_or("")
            .ends_with("bridge.toml")
    );
    assert_eq!(setting("sync.schedule")["origin"], "env ENVSYNC_SCHEDULE");
    assert_eq!(setting("state_dir")["origin"], "flag --state-dir");
    assert_eq!(setting("sync.allow_deletions")["origin"], "default");
    assert_eq!(setting("token RENDER_API_TOKEN")["value"], "<redacted>");
    assert!(!r.all().contains("supersecret"));

    let text = s.run(&["config", "show"]);
    assert_eq!(text.code, 0);
    assert!(text.stdout.contains("sync.schedule"), "{}", text.stdout);
    assert!(text.stdout.contains("(env ENVSYNC_SCHEDULE)"));
}
