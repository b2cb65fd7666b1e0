//! grpc.health.v1 per model: the service name is the model's name; it is
//! SERVING while the model serves and passes its health probes, NOT_SERVING
//! otherwise (also after an undeploy). The empty name is the whole server
//! (strict readiness), set by `daemon::run`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::deploy::Registry;

/// Keeps the health service in step with the registry until shutdown.
pub async fn sync(registry: Arc<Registry>, health: HealthReporter, shutdown: CancellationToken) {
    let mut known = BTreeSet::new();
    loop {
        let serving = registry.all();
        let names: BTreeSet<String> = serving.iter().map(|m| m.record.model.clone()).collect();
        for model in &serving {
            let status = if model.healthy.load(Ordering::Acquire) {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            health.set_service_status(&model.record.model, status).await;
        }
        for gone in known.difference(&names) {
            health.set_service_status(gone, ServingStatus::NotServing).await;
        }
        known.extend(names);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = registry.wait_changed() => {}
        }
    }
}
