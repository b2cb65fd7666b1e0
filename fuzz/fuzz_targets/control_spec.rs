//! dsmil.v1.Control requests off the wire, through the daemon's conversions
//! of them (`serve::convert`): a DeploySpec into the deployer's
//! `DeployRequest` (name, format, method, activations, backend, hint,
//! precision, worker and batch bounds), a RollbackRequest into its target;
//! each refusal through the one error → status mapping. The other requests
//! carry only names and numbers their handlers use as they are: decoding
//! them is what is reachable.

#![no_main]

use dsmil_proto::control as pb;
use dsmild::serve::convert;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tonic::Status;

fn deploy_spec(spec: pb::DeploySpec) {
    match convert::deploy_request(spec) {
        Ok(req) => {
            // What the deployer is promised.
            assert!(dsmild::deploy::validate_name(&req.name).is_ok(), "{:?}", req.name);
            assert!(
                req.workers
                    .is_none_or(|w| (1..=dsmild::deploy::MAX_WORKERS).contains(&w))
            );
            assert!(
                req.max_batch
                    .is_none_or(|b| (1..=dsmild::config::MAX_BATCH_SIZE).contains(&b))
            );
        }
        Err(e) => {
            let _ = Status::from(e);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // One input, read as each request the service takes.
    if let Ok(pb::DeployRequest {
        part: Some(pb::deploy_request::Part::Spec(spec)),
    }) = pb::DeployRequest::decode(data)
    {
        deploy_spec(spec);
    }
    if let Ok(spec) = pb::DeploySpec::decode(data) {
        deploy_spec(spec);
    }
    if let Ok(req) = pb::RollbackRequest::decode(data) {
        match convert::rollback_target(req) {
            Ok((_, reason)) => assert!(!reason.is_empty(), "a rollback always says why"),
            Err(e) => {
                let _ = Status::from(e);
            }
        }
    }
    let _ = pb::UndeployRequest::decode(data);
    let _ = pb::GetDeploymentRequest::decode(data);
    let _ = pb::ListDeploymentsRequest::decode(data);
    let _ = pb::EventsRequest::decode(data);
    let _ = pb::ReportRequest::decode(data);
    let _ = pb::DriftRequest::decode(data);
    let _ = pb::ReportOutcomeRequest::decode(data);
});
