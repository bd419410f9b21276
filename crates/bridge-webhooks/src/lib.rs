//! Deploy webhooks: how deploy events come in.
//!
//! [`webhook`] verifies the signed deliveries of
//! GitHub, Netlify and Render and normalises them into a [`DeployEvent`] (the seeds' shape,
//! [`deploy`]) with the bus topics to publish it on and a key to de-duplicate retries.
//!
//! This crate knows nothing of HTTP servers, stores or the CLI: headers come in through the
//! [`webhook::Headers`] trait, the clock as a parameter, and the server decides what to do
//! with a [`webhook::Receipt`] or answer for a [`webhook::Rejection`].

pub mod deploy;
pub mod webhook;

pub use deploy::{DeployEvent, DeployEventRequest, DeployEventType, DeployMetadata, Platform};
pub use webhook::{
    DeliveryId, Headers, Outcome, Receipt, Rejection, VerifyOptions, WebhookSecrets,
    WebhookVerifier,
};
