//! How a gateway runs a connector that has a lease: stand by until the lease can be taken,
//! run the connector under it (its sink fences every commit with the lease's epoch) while
//! renewing it, and stop the connector at once when a renewal finds another holder. When the
//! connector ends on its own (a stop signal, a disable, an error) the lease is released, so a
//! standby gateway takes over without waiting for it to expire.

use crate::{
    config::ConnectorConfig,
    pipeline::{ConnectorControl, ConnectorError},
    status::ConnectorHandle,
};

/// Runs `config` (which has a lease) as instance `instance` until the process or the operator
/// stops it, standing by whenever another gateway holds its lease.
#[cfg(feature = "postgres")]
pub async fn run_leased(
    config: ConnectorConfig,
    instance: &str,
    control: ConnectorControl,
    handle: &ConnectorHandle,
) -> Result<(), ConnectorError> {
    use std::time::Duration;

    use tracing::{info, warn};

    use super::postgres::PgLeases;
    use crate::{
        config::SinkConfig,
        pipeline::{RunContext, run_connector_in},
    };

    let lease = config.lease.clone().expect("run_leased is given a leased connector");
    let SinkConfig::Postgres(sink) = &config.sink else {
        let message = "a lease needs the postgres sink (`lease` is refused by validation otherwise)".into();
        return Err(ConnectorError::Config { connector: config.id, message });
    };
    let every = Duration::from_millis(lease.renew_every_ms);
    let id = config.id.clone();
    let mut store: Option<PgLeases> = None;
    let mut reported = String::new();
    let mut backoff = crate::backoff::Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        // Stand by until the lease is ours.
        let tenure = loop {
            if control.shutdown.is_cancelled() {
                return Ok(());
            }
            let attempt = async {
                if store.is_none() {
                    store = Some(PgLeases::open(&sink.url, &sink.schema).await?);
                }
                let leases = store.as_mut().expect("opened above");
                match leases.try_acquire(&id, instance, lease.ttl_ms).await? {
                    Some(tenure) => Ok(Ok(tenure)),
                    None => Ok(Err(leases.holder(&id).await?)),
                }
            };
            let attempt: Result<Result<super::Tenure, Option<super::Holder>>, super::LeaseError> = attempt.await;
            let why = match attempt {
                Ok(Ok(tenure)) => break tenure,
                Ok(Err(Some(holder))) => format!(
                    "gateway `{}` holds the lease (epoch {}, {} ms left unless renewed)",
                    holder.holder,
                    holder.epoch,
                    holder.expires_in_ms.max(0)
                ),
                Ok(Err(None)) => "the lease was just released; taking it".to_owned(),
                Err(e) => format!("cannot reach the lease store: {e}"),
            };
            // One log line per change of holder, not one per attempt.
            let who = why.split(" (").next().unwrap_or_default().to_owned();
            if who != reported {
                info!(connector = %id, "standing by: {why}");
                reported = who;
            }
            handle.standby(why);
            tokio::select! {
                _ = control.shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(every) => {}
            }
        };
        reported.clear();
        info!(connector = %id, holder = %tenure.holder, epoch = tenure.epoch, "took the lease; starting the connector");
        let leases = store.as_mut().expect("the lease was taken through it");
        handle.starting();
        let context = RunContext { tenure: Some(tenure.clone()), ..RunContext::default() };
        let run_control = control.child();
        let run = run_connector_in(config.clone(), context, run_control.clone(), |progress| handle.started(progress));
        tokio::pin!(run);
        let mut renewal = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut lost = false;
        let result = loop {
            tokio::select! {
                result = &mut run => break result,
                _ = renewal.tick(), if !lost => match leases.renew(&id, &tenure, lease.ttl_ms).await {
                    Ok(true) => {}
                    Ok(false) => {
                        warn!(connector = %id, epoch = tenure.epoch, "another gateway took the lease over; stopping the connector here now (its uncommitted work is fenced off)");
                        lost = true;
                        run_control.abort.cancel();
                    }
                    // The sink's fence keeps commits safe meanwhile; the next renewal may work.
                    Err(e) => warn!(connector = %id, "{e}; the connector goes on, every commit still fenced by the lease"),
                },
            }
        };
        // A connector that failed because its commit was fenced has lost the lease too.
        let lost = lost || matches!(leases.renew(&id, &tenure, lease.ttl_ms).await, Ok(false));
        if lost {
            if let Err(e) = &result {
                info!(connector = %id, "stopped after losing the lease: {e}");
            }
            handle.standby("another gateway took the lease over".into());
            continue;
        }
        if let Err(e) = leases.release(&id, &tenure).await {
            warn!(connector = %id, "{e}; a standby gateway takes over once it expires");
        }
        // An outage of the target or source: handed over (a standby may reach it), and waited
        // out here before standing by again, as an unleased connector waits it out.
        if let Err(e) = &result
            && let Some(on) = e.outage(&config).filter(|_| !control.shutdown.is_cancelled())
        {
            let delay = backoff.next_delay();
            warn!(
                connector = %id,
                "{e}; lease released, waiting for the {} (state waiting_for_{}); trying again in {delay:?}",
                on.name(),
                on.name()
            );
            handle.waiting(on, e.to_string());
            tokio::select! {
                _ = control.shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(delay) => {}
            }
            continue;
        }
        return result;
    }
}

#[cfg(not(feature = "postgres"))]
pub async fn run_leased(config: ConnectorConfig, _: &str, _: ConnectorControl, _: &ConnectorHandle) -> Result<(), ConnectorError> {
    let message = "a lease needs the postgres feature, which this build lacks".into();
    Err(ConnectorError::Config { connector: config.id, message })
}
