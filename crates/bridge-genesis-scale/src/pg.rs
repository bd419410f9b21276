//! What the PostgreSQL stores share: a small connection pool, the name a store goes by in
//! errors (never its password), identifier quoting and the per-store schema.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, Config, NoTls};

/// `postgres:host:port/dbname` plus the schema: enough to tell stores apart, never the
/// password.
pub(crate) fn describe(config: &Config, schema: Option<&str>) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    match schema {
        Some(schema) => format!("postgres:{host}:{port}/{db} (schema {schema})"),
        None => format!("postgres:{host}:{port}/{db}"),
    }
}

pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Opens one connection, driven by a task of its own until the client is dropped, with the
/// store's schema first on its search path.
pub(crate) async fn connect_client(
    config: &Config,
    schema: Option<&str>,
) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    set_search_path(&client, schema).await?;
    Ok(client)
}

pub(crate) async fn set_search_path(
    client: &Client,
    schema: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    if let Some(schema) = schema {
        client
            .batch_execute(&format!("SET search_path TO {}", quote_ident(schema)))
            .await?;
    }
    Ok(())
}

/// A few connections, opened on demand and kept for reuse: a transaction needs a connection
/// to itself, and PostgreSQL connections are too costly to open per call.
pub(crate) struct Pool {
    pub(crate) config: Config,
    pub(crate) schema: Option<String>,
    idle: Mutex<Vec<Client>>,
    permits: Arc<Semaphore>,
}

impl Pool {
    pub(crate) fn new(config: Config, schema: Option<String>, max_connections: usize) -> Self {
        Self {
            config,
            schema,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max_connections.max(1))),
        }
    }

    pub(crate) async fn get(&self) -> Result<Pooled<'_>, tokio_postgres::Error> {
        // The semaphore is never closed, so waiting for a permit cannot fail.
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            unreachable!("the pool's semaphore is never closed")
        };
        let reused = self
            .idle
            .lock()
            .ok()
            .and_then(|mut idle| idle.pop())
            .filter(|c| !c.is_closed());
        let client = match reused {
            Some(client) => client,
            None => connect_client(&self.config, self.schema.as_deref()).await?,
        };
        Ok(Pooled {
            pool: self,
            client: Some(client),
            _permit: permit,
        })
    }

    /// Gives a connection taken with [`Pooled::detach`] back for reuse.
    pub(crate) fn put_back(&self, client: Client) {
        if !client.is_closed()
            && let Ok(mut idle) = self.idle.lock()
        {
            idle.push(client);
        }
    }
}

pub(crate) struct Pooled<'a> {
    pool: &'a Pool,
    client: Option<Client>,
    _permit: OwnedSemaphorePermit,
}

impl Pooled<'_> {
    /// Takes the connection out of the pool's count, for a holder that keeps it longer than
    /// a call (a lock's session); [`Pool::put_back`] returns it.
    pub(crate) fn detach(mut self) -> Client {
        self.client.take().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        // Only `Drop` and `detach` take it out.
        self.client.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        // A transaction dropped without COMMIT has queued its ROLLBACK on this connection,
        // ahead of whatever the next user sends, so the connection is clean to reuse.
        if let Some(client) = self.client.take() {
            self.pool.put_back(client);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_hide_passwords() {
        let config: Config = "host=db user=u password=hunter2 dbname=bus"
            .parse()
            .unwrap();
        let text = describe(&config, Some("s"));
        assert_eq!(text, "postgres:db:5432/bus (schema s)");
    }
}
