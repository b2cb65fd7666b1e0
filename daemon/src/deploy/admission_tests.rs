use std::sync::Arc;

use super::*;
use crate::backend::fake::FakeBackend;
use crate::backend::{DataType, Pool, RequestLimits, Signature, TensorSpec};
use crate::deploy::{ActiveModel, DeployState};
use crate::monitor::DriftTracker;
use crate::monitor::probation::Probation;
use crate::store::DeploymentRecord;
use crate::topology::Target;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn config() -> Config {
    crate::config::load(None, &[]).unwrap()
}

fn occupant(model: &str, device: u32, layer: u8, bytes: u64) -> Occupant {
    Occupant {
        model: model.into(),
        device,
        layer,
        bytes,
    }
}

/// An active deployment record, as the registry holds it.
pub(crate) fn record(model: &str, device: u32, layer: u8, estimated: u64, measured: u64) -> DeploymentRecord {
    DeploymentRecord {
        id: 1,
        model: model.into(),
        version: 1,
        device,
        layer,
        classification: 0,
        target: Target::Cpu,
        effective_target: Target::Cpu,
        backend: crate::backend::BackendKind::OnnxRuntime,
        performance_hint: Default::default(),
        workers: 1,
        precision: Default::default(),
        max_batch: 0,
        sha256: String::new(),
        state: DeployState::Active,
        history: Vec::new(),
        created_ms: 0,
        estimated_bytes: estimated,
        measured_bytes: measured,
        probe_shapes: Vec::new(),
        probe_values: Vec::new(),
        serving: Default::default(),
    }
}

/// A registry entry whose one worker runs a fake model: no runtime loaded.
pub(crate) fn serving(record: DeploymentRecord) -> ActiveModel {
    let signature = Signature {
        inputs: vec![TensorSpec {
            name: "x".into(),
            dtype: DataType::F32,
            shape: vec![-1, 2],
        }],
        outputs: vec![TensorSpec {
            name: "y".into(),
            dtype: DataType::F32,
            shape: vec![-1, 2],
        }],
    };
    let label = format!("{}-v{}", record.model, record.version);
    let pool = Pool::start(&label, vec![FakeBackend::new().model(signature.clone())], 4, None, &[]).unwrap();
    let limits = RequestLimits {
        max_bytes: 1 << 20,
        max_batch: 8,
    };
    ActiveModel::new(
        record,
        signature,
        limits,
        pool,
        Probation::passed(),
        DriftTracker::new(10, 10),
    )
}

pub(crate) fn registry(records: impl IntoIterator<Item = DeploymentRecord>) -> Arc<Registry> {
    let registry = Arc::new(Registry::new(tokio::sync::mpsc::unbounded_channel().0));
    for r in records {
        registry.insert(serving(r));
    }
    registry
}

fn layer(config: &Config, id: u32) -> &Layer {
    config.topology.layer(id).unwrap()
}

#[test]
fn the_registry_charges_measured_bytes_once_known_else_the_estimate() {
    let registry = registry([
        record("b", 0, 2, 100 * MIB, 0),
        record("a", 43, 7, 100 * MIB, 300 * MIB),
    ]);
    assert_eq!(
        registry.occupants().into_owned(),
        [occupant("a", 43, 7, 300 * MIB), occupant("b", 0, 2, 100 * MIB)],
        "in model-name order"
    );
    assert_eq!(usage(&registry, 7, ""), (300 * MIB, 400 * MIB));
}

#[test]
fn usage_counts_the_layer_and_the_host_but_not_the_model_being_replaced() {
    let serving = [
        occupant("a", 0, 2, GIB),
        occupant("b", 1, 2, 2 * GIB),
        occupant("c", 43, 7, 5 * GIB),
    ];
    assert_eq!(usage(&serving[..], 2, "x"), (3 * GIB, 8 * GIB));
    assert_eq!(usage(&serving[..], 2, "b"), (GIB, 6 * GIB));
    assert_eq!(usage(&serving[..], 7, "c"), (0, 3 * GIB));
    assert_eq!(usage(&serving[..], 5, "x"), (0, 8 * GIB));
    assert_eq!(usage(&[][..], 2, "x"), (0, 0));
}

#[test]
fn a_layer_takes_up_to_its_budget_and_not_a_byte_more() {
    let config = config();
    let training = layer(&config, 2);
    let budget = training.budget_bytes.unwrap();
    let serving = [occupant("a", 0, 2, GIB)];
    admit(&config, &serving[..], training, "new", budget - GIB, "estimated").unwrap();
    let err = admit(&config, &serving[..], training, "new", budget - GIB + 1, "estimated").unwrap_err();
    match err {
        DeployError::OverBudget {
            scope,
            when,
            need,
            used,
            limit,
        } => {
            assert_eq!(scope, "layer 2 (TRAINING)");
            assert_eq!(when, "estimated");
            assert_eq!((need, used, limit), (budget - GIB + 1, GIB, budget));
        }
        other => panic!("expected OverBudget, got {other}"),
    }
    // Another layer's deployments do not count against this one's budget.
    let elsewhere = [occupant("a", 43, 7, GIB)];
    admit(&config, &elsewhere[..], training, "new", budget, "estimated").unwrap();
}

#[test]
fn the_version_being_replaced_does_not_count_against_its_successor() {
    let config = config();
    let training = layer(&config, 2);
    let budget = training.budget_bytes.unwrap();
    let serving = [occupant("a", 0, 2, budget - GIB)];
    admit(&config, &serving[..], training, "a", budget, "measured after loading").unwrap();
    let err = admit(&config, &serving[..], training, "b", 2 * GIB, "measured after loading").unwrap_err();
    assert!(
        matches!(err, DeployError::OverBudget { when: "measured after loading", used, .. } if used == budget - GIB),
        "{err}"
    );
}

#[test]
fn all_layers_together_stay_within_the_hosts_available_memory() {
    let mut config = config();
    config.memory.available_bytes = 10 * GIB;
    let serving = [occupant("a", 0, 2, 3 * GIB), occupant("b", 43, 7, 5 * GIB)];
    let extended = layer(&config, 7).clone();
    admit(&config, &serving[..], &extended, "new", 2 * GIB, "estimated").unwrap();
    let err = admit(&config, &serving[..], &extended, "new", 2 * GIB + 1, "estimated").unwrap_err();
    match err {
        DeployError::OverBudget { scope, used, limit, .. } => {
            assert_eq!(scope, "the host (memory.available_gb)");
            assert_eq!((used, limit), (8 * GIB, 10 * GIB));
        }
        other => panic!("expected OverBudget, got {other}"),
    }
    // Replacing b frees its 5 GiB for the new version.
    admit(&config, &serving[..], &extended, "b", 7 * GIB, "estimated").unwrap();
}

#[test]
fn the_layer_budget_is_checked_before_the_hosts() {
    let mut config = config();
    config.memory.available_bytes = GIB;
    let training = layer(&config, 2).clone();
    let err = admit(
        &config,
        &[][..],
        &training,
        "new",
        training.budget_bytes.unwrap() + 1,
        "estimated",
    )
    .unwrap_err();
    assert!(
        matches!(&err, DeployError::OverBudget { scope, .. } if scope.starts_with("layer 2")),
        "{err}"
    );
}

#[test]
fn a_saturated_estimate_is_refused_not_wrapped() {
    let config = config();
    let extended = layer(&config, 7);
    let info = crate::model::ModelInfo {
        weight_bytes: u64::MAX / 2,
        io_bytes: u64::MAX / 2,
        ..sample_info()
    };
    let need = estimate(&info, 64, 1 << 20);
    assert_eq!(need, u64::MAX);
    for serving in [&[][..], &[occupant("a", 43, 7, MIB)][..]] {
        let err = admit(&config, serving, extended, "new", need, "estimated").unwrap_err();
        assert!(matches!(err, DeployError::OverBudget { need: u64::MAX, .. }), "{err}");
    }
}

#[test]
fn the_estimate_counts_weights_activations_at_the_max_batch_and_overhead_per_instance() {
    let info = crate::model::ModelInfo {
        weight_bytes: 10 * MIB,
        io_bytes: 1000,
        ..sample_info()
    };
    let one = estimate(&info, 1, 1);
    assert_eq!(one, 10 * MIB + 4 * 1000 + INSTANCE_OVERHEAD);
    assert_eq!(estimate(&info, 3, 1), 3 * one);
    assert_eq!(estimate(&info, 1, 8), 10 * MIB + 4 * 1000 * 8 + INSTANCE_OVERHEAD);
}

#[test]
fn bytes_read_as_kib_mib_or_gib() {
    assert_eq!(human(1), "1 KiB");
    assert_eq!(human(800 * 1024), "800 KiB");
    assert_eq!(human(312 * MIB), "312.0 MiB");
    assert_eq!(human(GIB + GIB / 4), "1.25 GiB");
}

/// The sample model's description, as a base for made-up figures.
fn sample_info() -> crate::model::ModelInfo {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/digits/model.onnx")).unwrap();
    crate::model::inspect_onnx(&bytes).unwrap()
}
