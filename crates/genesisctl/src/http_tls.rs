//! TLS for every HTTP client in the process: rustls on `ring` (the aws-lc default costs a
//! minute of build on two cores), installed once.

pub fn install() {
    // Fails only when a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
