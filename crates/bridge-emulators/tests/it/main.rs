//! Integration tests: every emulator driven through real HTTP with reqwest,
//! checking paths, status codes and JSON shapes against the provider
//! reference, plus the shared fault layer.

mod faults;
mod github;
mod instances;
mod netlify;
mod render;
mod write_log;

use bridge_emulators::{EmulatorConfig, Emulators};

/// Starts only the platforms a test needs, with the given fault settings.
pub(crate) async fn start_with(
    render: bool,
    netlify: bool,
    github: bool,
    tweak: impl FnOnce(&mut EmulatorConfig),
) -> Emulators {
    let mut config = EmulatorConfig {
        render,
        netlify,
        github,
        ..EmulatorConfig::default()
    };
    tweak(&mut config);
    bridge_emulators::start(config)
        .await
        .expect("emulators start")
}

pub(crate) fn client() -> reqwest::Client {
    // reqwest 0.13 with `rustls-no-provider` panics at build time without a
    // process-wide provider, even for plain http://. Installing twice is an
    // error that only means another test got there first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().expect("reqwest client")
}

pub(crate) fn export(emulators: &Emulators, name: &str) -> String {
    emulators
        .exports()
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .expect("variable is exported")
}
