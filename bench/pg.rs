//! A fresh PostgreSQL database per scenario, so one run's read model, checkpoints and bloat
//! never affect the next. Created from the role in the URL (scripts/postgres.sh makes it a
//! superuser) and dropped when the scenario ends.

use anyhow::Context;
use tokio_postgres::NoTls;

pub struct ScratchDatabase {
    admin_url: String,
    name: String,
    /// The URL of the new database.
    pub url: String,
}

impl ScratchDatabase {
    pub async fn create(admin_url: &str, scenario: &str) -> anyhow::Result<Self> {
        let name = format!("bench_{}_{}", scenario.replace('-', "_"), std::process::id());
        let admin = connect(admin_url).await?;
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("creating database {name} (the role in the URL needs CREATEDB)"))?;
        // Start from a clean server: no dirty buffers of an earlier scenario to write back.
        admin.batch_execute("CHECKPOINT").await.context("CHECKPOINT (the role in the URL needs to be a superuser)")?;
        Ok(Self { admin_url: admin_url.to_string(), url: with_database(admin_url, &name)?, name })
    }

    /// Size of the database on disk, in MB.
    pub async fn size_mb(&self) -> anyhow::Result<f64> {
        let client = connect(&self.url).await?;
        let row = client.query_one("SELECT pg_database_size(current_database())", &[]).await?;
        Ok(row.get::<_, i64>(0) as f64 / 1e6)
    }

    pub async fn drop(self) -> anyhow::Result<()> {
        let admin = connect(&self.admin_url).await?;
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).await?;
        Ok(())
    }
}

pub async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) =
        tokio_postgres::connect(url, NoTls).await.with_context(|| format!("connecting to {}", redact(url)))?;
    tokio::spawn(connection);
    Ok(client)
}

/// `postgres://user:pw@host:port/db?x=y` with `db` replaced by `name`.
fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let scheme_end = url.find("://").context("the PostgreSQL URL must look like postgres://user:pw@host:port/db")? + 3;
    let (base, query) = match url[scheme_end..].find('?') {
        Some(q) => url.split_at(scheme_end + q),
        None => (url, ""),
    };
    let host_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    Ok(format!("{}/{name}{query}", &base[..host_end]))
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}@{}", &url[..s + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}
