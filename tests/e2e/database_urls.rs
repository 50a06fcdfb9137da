//! What `perdure serve --db` accepts, and the errors that name what to fix
//! when the database it names cannot be used: a value that is neither a
//! path nor a PostgreSQL URL, a server that does not answer, a database
//! that does not exist, one of a newer schema, one another host owns.

use std::net::TcpListener;
use std::time::Duration;

use perdure_tests::MASTER_KEY;
use perdure_tests::child::run_to_exit;
use perdure_tests::postgres::PgServer;

const CHILD: &str = env!("CARGO_BIN_EXE_perdure-child");

/// Runs `perdure serve --db DB` until it exits; returns its stderr. Fails
/// if it starts serving instead.
async fn refused_start(db: String) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let functions = dir.path().join("functions");
    let output = tokio::task::spawn_blocking(move || {
        run_to_exit(
            std::process::Command::new(CHILD)
                .arg("serve")
                .arg("--functions")
                .arg(functions)
                .arg("--db")
                .arg(db)
                .args(["--listen", "127.0.0.1:0", "--dashboard-listen", "off"])
                .env("PERDURE_MASTER_KEY", MASTER_KEY),
            Duration::from_secs(60),
        )
    })
    .await??;
    anyhow::ensure!(!output.status.success(), "it started");
    Ok(String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_db_value_that_names_no_database_is_refused() -> anyhow::Result<()> {
    for db in [
        "postgress://perdure@127.0.0.1/app",
        "mysql://perdure@127.0.0.1/app",
    ] {
        let stderr = refused_start(db.into()).await?;
        assert!(
            stderr.contains("neither a file path nor a PostgreSQL URL") && stderr.contains(db),
            "{stderr}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_named_with_what_to_check() -> anyhow::Result<()> {
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let stderr = refused_start(format!("postgres://perdure:secret@127.0.0.1:{port}/app")).await?;
    assert!(
        stderr.contains(&format!(
            "cannot connect to postgres://perdure:***@127.0.0.1:{port}/app"
        )) && stderr.contains("check that the server runs"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("secret"),
        "the password is never shown: {stderr}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_newer_database_is_refused_clearly() -> anyhow::Result<()> {
    let Some(server) = PgServer::shared().await? else {
        return Ok(());
    };
    let stderr = refused_start(server.url("no_such_database")).await?;
    assert!(
        stderr.contains("no_such_database") && stderr.contains("does not exist"),
        "{stderr}"
    );

    let db = server.create_database().await?;
    let client = db.connect().await?;
    client
        .batch_execute(
            "CREATE TABLE perdure_schema (version BIGINT NOT NULL);
             INSERT INTO perdure_schema VALUES (99);",
        )
        .await?;
    let stderr = refused_start(db.url().to_owned()).await?;
    assert!(
        stderr.contains("schema version 99 is newer than this host supports"),
        "{stderr}"
    );
    Ok(())
}
