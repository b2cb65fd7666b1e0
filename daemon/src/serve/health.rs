//! grpc.health.v1 per model: the service name is the model's name; it is
//! SERVING while the model serves and passes its health probes, NOT_SERVING
//! otherwise (also after an undeploy). The empty name is the whole server
//! (strict readiness), set by `daemon::run`. The services' own names,
//! `inference.GRPCInferenceService` and `dsmil.v1.Control`, are SERVING for
//! as long as the listeners serve them (Triton and load balancers ask for
//! the service name).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use dsmil_proto::control::control_server::ControlServer;
use dsmil_proto::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::deploy::Registry;

/// Keeps the health service in step with the registry until shutdown.
pub async fn sync(registry: Arc<Registry>, health: HealthReporter, shutdown: CancellationToken) {
    health
        .set_serving::<GrpcInferenceServiceServer<super::InferenceService>>()
        .await;
    health.set_serving::<ControlServer<super::ControlService>>().await;
    let mut known = BTreeSet::new();
    loop {
        // Copy out what is needed before awaiting: holding the deployments
        // across an await would keep an undeployed model (and its memory)
        // alive until this pass ends.
        let serving: Vec<(String, bool)> = registry
            .all()
            .iter()
            .map(|m| (m.record.model.clone(), m.healthy.load(Ordering::Acquire)))
            .collect();
        let names: BTreeSet<String> = serving.iter().map(|(name, _)| name.clone()).collect();
        for (name, healthy) in &serving {
            let status = if *healthy {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            health.set_service_status(name, status).await;
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
