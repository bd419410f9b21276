//! Passwords out of URLs and connection strings, for messages, errors and `config show`.

/// `text` with its password, if any, replaced by `***`. Covers `scheme://user:password@host…`,
/// the same without a scheme (`user:password@host:port`, as NATS servers are named), and
/// `password=…` in query strings and key/value connection strings.
pub fn url_password(text: &str) -> String {
    let (scheme, rest) = match text.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, text),
    };
    let authority_end = rest.find(['/', '?', ' ']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let mut out = text.to_owned();
    if let Some((userinfo, host)) = authority.rsplit_once('@')
        && let Some((user, _)) = userinfo.split_once(':')
    {
        let head = scheme.map(|s| format!("{s}://")).unwrap_or_default();
        out = format!("{head}{user}:***@{host}{}", &rest[authority_end..]);
    }
    let lower = out.to_ascii_lowercase();
    if let Some(at) = lower.find("password=") {
        let start = at + "password=".len();
        let end = out[start..]
            .find(['&', ' '])
            .map_or(out.len(), |i| start + i);
        out.replace_range(start..end, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        for (text, shown) in [
            (
                "postgres://bridge:hunter2@db.internal:5432/bridge",
                "postgres://bridge:***@db.internal:5432/bridge",
            ),
            (
                "postgresql://u:p%40ss@h/db?sslmode=require",
                "postgresql://u:***@h/db?sslmode=require",
            ),
            (
                "postgres://u@h/db?password=hunter2&x=1",
                "postgres://u@h/db?password=***&x=1",
            ),
            (
                "host=db user=u password=hunter2 dbname=b",
                "host=db user=u password=*** dbname=b",
            ),
            (
                "nats://u:hunter3@127.0.0.1:4222",
                "nats://u:***@127.0.0.1:4222",
            ),
            ("u:hunter3@127.0.0.1:4222", "u:***@127.0.0.1:4222"),
            (
                "https://u:hunter4@vault.example/x",
                "https://u:***@vault.example/x",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("127.0.0.1:4222", "127.0.0.1:4222"),
            ("local:.env", "local:.env"),
        ] {
            assert_eq!(url_password(text), shown, "{text}");
        }
    }
}
