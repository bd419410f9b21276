//! The log of write requests one emulator has answered, oldest first, for tests that must
//! know exactly which writes a client sent, not only how many (a crash harness counting
//! the writes a resume repeats).

/// One write request: a mutating method on an API route, as [`crate::Stats::writes`]
/// classifies them, whatever its answer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WriteRecord {
    /// `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// The concrete path, without the query string, e.g.
    /// `/repos/bridge/emulated/actions/secrets/API_TOKEN`.
    pub path: String,
    /// The one key the request writes, when it names one: from the path (`API_TOKEN`
    /// above), or from the body where the API puts it there (GitHub's variable create).
    /// `None` for bulk writes (Render's replace-all, Netlify's create), whose bodies are
    /// not logged.
    pub key: Option<String>,
    /// The answer's status. Only a 2xx changed anything; refusals (401, 429, an injected
    /// 503, an exhausted write budget's 500) and 4xx answers are logged too.
    pub status: u16,
}

/// Set by a handler, as a response extension, when the key it wrote came in the body.
#[derive(Clone, Debug)]
pub(crate) struct BodyKey(pub(crate) String);

/// Route parameters that name the key a request writes.
const KEY_PARAMS: [&str; 4] = ["{envVarKey}", "{key}", "{secret_name}", "{name}"];

/// The key named by `path` where `template` has a key parameter.
pub(crate) fn key_in_path(template: &str, path: &str) -> Option<String> {
    template
        .split('/')
        .zip(path.split('/'))
        .find(|(t, _)| KEY_PARAMS.contains(t))
        .map(|(_, p)| p.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_the_key_parameter_only() {
        assert_eq!(
            key_in_path(
                "/repos/{owner}/{repo}/actions/secrets/{secret_name}",
                "/repos/o/r/actions/secrets/API_TOKEN"
            )
            .as_deref(),
            Some("API_TOKEN")
        );
        assert_eq!(
            key_in_path(
                "/api/v1/accounts/{account_id}/env/{key}/value/{id}",
                "/api/v1/accounts/a/env/PORT/value/v-1"
            )
            .as_deref(),
            Some("PORT")
        );
        assert_eq!(
            key_in_path(
                "/v1/services/{serviceId}/env-vars",
                "/v1/services/srv/env-vars"
            ),
            None
        );
    }
}
