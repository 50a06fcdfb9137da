//! From a `postgres://` URL to a pool of connections: parsing, TLS, and
//! what an error of the server or the network means to the host.

use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use perdure_storage::StorageError;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;

/// Whether `db` names a PostgreSQL database rather than a SQLite file.
pub fn is_postgres_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// The URL with its password (if any) replaced, for messages and logs.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (location, query) = match rest.split_once('?') {
        Some((location, query)) => (location, Some(query)),
        None => (rest, None),
    };
    // The userinfo ends at the last '@' (a password may hold an unescaped
    // '/' or '#'); only its part after the first ':' is secret.
    let location = match location.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => location.to_owned(),
        },
        None => location.to_owned(),
    };
    let query = query.map(|query| {
        query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    match query {
        Some(query) => format!("{scheme}://{location}?{query}"),
        None => format!("{scheme}://{location}"),
    }
}

/// Parses the URL; says what is wrong with it.
pub(crate) fn parse(url: &str) -> Result<tokio_postgres::Config, StorageError> {
    url.parse::<tokio_postgres::Config>().map_err(|e| {
        StorageError::Database(format!(
            "{} is not a valid PostgreSQL URL ({e}); expected postgres://user[:password]@host[:port]/database",
            redacted(url)
        ))
    })
}

/// TLS for connections whose `sslmode` asks for it, verified against the
/// webpki roots (rustls with ring, as the host's other clients).
pub(crate) fn tls() -> tokio_postgres_rustls::MakeRustlsConnect {
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map(|builder| builder.with_root_certificates(roots).with_no_client_auth());
    match config {
        Ok(config) => tokio_postgres_rustls::MakeRustlsConnect::new(config),
        // Ring supports the default versions; without them only plain
        // connections could work, and a TLS one fails with the server's
        // error.
        Err(_) => tokio_postgres_rustls::MakeRustlsConnect::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        ),
    }
}

/// How long connecting may take unless the URL sets `connect_timeout`.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A pool of at most `size` connections. Nothing is connected yet.
pub(crate) fn pool(config: tokio_postgres::Config, size: usize) -> Result<Pool, StorageError> {
    let manager = Manager::from_config(
        settled(config),
        tls(),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .build()
        .map_err(|e| StorageError::Database(format!("cannot build the connection pool: {e}")))
}

/// The URL's configuration with this crate's defaults where it sets none:
/// the application name, a connect timeout, and no TLS unless asked for.
pub(crate) fn settled(mut config: tokio_postgres::Config) -> tokio_postgres::Config {
    if config.get_application_name().is_none() {
        config.application_name("perdure");
    }
    // A server that drops packets would hold a connection attempt (and a
    // request waiting on it) for minutes; past this it is unavailable.
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    // `prefer` (the default) would try TLS with a server that offers it and
    // fail on a certificate the roots do not know, unlike libpq, which does
    // not verify in that mode; a plain URL means a plain connection.
    if config.get_ssl_mode() == SslMode::Prefer {
        config.ssl_mode(SslMode::Disable);
    }
    config
}

/// What a PostgreSQL error means to the host.
pub(crate) fn pg_error(e: tokio_postgres::Error) -> StorageError {
    let Some(db) = e.as_db_error() else {
        // No server error: the connection failed, closed or timed out (an
        // I/O error underneath), or this side refused a value.
        let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
        return if e.is_closed() || io || e.to_string().starts_with("timeout") {
            StorageError::Unavailable(e.to_string())
        } else {
            StorageError::Database(e.to_string())
        };
    };
    let code = db.code();
    let text = format!("{}: {}", code.code(), db.message());
    if *code == SqlState::DISK_FULL {
        StorageError::Full(text)
    } else if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
        StorageError::ReadOnly(text)
    } else if *code == SqlState::IO_ERROR {
        StorageError::Io(text)
    } else if code.code().starts_with("08")
        || code.code().starts_with("57P")
        || *code == SqlState::TOO_MANY_CONNECTIONS
    {
        // Connection exceptions, and the server shutting down or starting.
        StorageError::Unavailable(text)
    } else {
        StorageError::Database(text)
    }
}

/// A pool error (no connection to be had) as a storage error.
pub(crate) fn pool_error(e: deadpool_postgres::PoolError) -> StorageError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_error(e),
        other => StorageError::Unavailable(other.to_string()),
    }
}

/// Whether the transaction lost a race with another and may simply run
/// again (a deadlock, or a serialization failure).
pub(crate) fn is_conflict(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|code| {
        *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_told_from_paths_and_passwords_are_hidden() {
        assert!(is_postgres_url("postgres://u@h/db"));
        assert!(is_postgres_url("postgresql://u@h/db"));
        assert!(!is_postgres_url("perdure.db"));
        assert!(!is_postgres_url("/var/lib/perdure/postgres.db"));
        assert_eq!(
            redacted("postgres://alice:s3cret@db:5432/app"),
            "postgres://alice:***@db:5432/app"
        );
        assert_eq!(
            redacted("postgres://alice@db/app"),
            "postgres://alice@db/app"
        );
        assert_eq!(
            redacted("postgres://alice:a/b#c@db/app?sslmode=require&password=x"),
            "postgres://alice:***@db/app?sslmode=require&password=***"
        );
        assert_eq!(
            redacted("postgres://db/app?user=alice&password=s3cret"),
            "postgres://db/app?user=alice&password=***"
        );
        assert!(parse("postgres://alice@db:notaport/app").is_err());
    }
}
