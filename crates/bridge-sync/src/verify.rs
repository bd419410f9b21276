//! [`verify`]: read several places at once and line them up for parity.

use bridge_core::diff::ObservedSet;

use crate::engine::observe;
use crate::store::StateStore;
use bridge_core::filter::KeyFilter;
use bridge_core::parity::{ParityColumn, ParityMatrix};
use bridge_core::{FingerprintKey, SecretClassifier};
use bridge_platforms::{PlatformError, PlatformSpec};
use tokio::task::JoinSet;

use crate::Target;

/// A place that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading {spec}: {source}")]
pub struct VerifyError {
    pub label: String,
    pub spec: PlatformSpec,
    #[source]
    pub source: PlatformError,
}

/// Reads every place concurrently and builds the parity matrix. The first place is the
/// reference that the others are judged against. Fails with the first place that could
/// not be read (a parity report with a hole in it would claim more than it knows).
pub async fn verify(
    places: &[Target],
    filter: &KeyFilter,
    classifier: &SecretClassifier,
    fingerprints: Option<&FingerprintKey>,
    store: Option<&StateStore>,
    protect: &[String],
) -> Result<ParityMatrix, VerifyError> {
    let mut tasks = JoinSet::new();
    for (index, place) in places.iter().cloned().enumerate() {
        tasks.spawn(async move {
            let read = place.platform.read().await;
            (index, place, read)
        });
    }
    let mut remote: Vec<Option<bridge_platforms::RemoteSet>> =
        places.iter().map(|_| None).collect();
    let mut first_error: Option<(usize, Target, PlatformError)> = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, _, Ok(set))) => remote[index] = Some(set),
            Ok((index, place, Err(e))) => {
                if first_error.as_ref().is_none_or(|(i, _, _)| index < *i) {
                    first_error = Some((index, place, e));
                }
            }
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    if let Some((_, place, source)) = first_error {
        return Err(VerifyError {
            label: place.label,
            spec: place.platform.spec().clone(),
            source,
        });
    }
    let mut columns: Vec<ParityColumn> = Vec::with_capacity(places.len());
    for (place, remote) in places.iter().zip(remote) {
        let records = match store {
            Some(store) => store
                .records(&place.platform.identity())
                .await
                .map_err(|e| VerifyError {
                    label: place.label.clone(),
                    spec: place.platform.spec().clone(),
                    source: PlatformError::Unsupported {
                        platform: place.platform.spec().to_string(),
                        what: e.to_string(),
                    },
                })?,
            None => Default::default(),
        };
        let observed: ObservedSet = observe(&remote.unwrap_or_default(), &records);
        columns.push(ParityColumn {
            label: place.label.clone(),
            observed,
        });
    }
    Ok(ParityMatrix::build(
        &columns,
        filter,
        classifier,
        fingerprints,
        protect,
    ))
}
