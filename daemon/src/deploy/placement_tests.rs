use super::*;
use crate::deploy::admission::tests::{record, registry};
use crate::topology::TopologyError;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

// The shipped topology: layer 1 (67-103) reserved; layer 2 TRAINING 0-14
// (4 GB), 3 SECRET 15-22, 4 23-30, 5 COSMIC 31-36, 6 37-42, 7 EXTENDED
// 43-50 (40 GB), 8 ENHANCED_SEC 51-58, 9 EXECUTIVE 59-66.
fn config() -> Config {
    crate::config::load(None, &[]).unwrap()
}

fn request(model: &str) -> Request<'_> {
    Request {
        model,
        device: None,
        layer: None,
        classification: None,
        need: MIB,
    }
}

fn at(model: &str, device: u32, layer: u8) -> Occupant {
    Occupant {
        model: model.into(),
        device,
        layer,
        bytes: MIB,
    }
}

/// Every device of `layer`'s ids, each serving a model of its own.
fn filled(devices: std::ops::RangeInclusive<u32>, layer: u8) -> Vec<Occupant> {
    devices.map(|d| at(&format!("m{d}"), d, layer)).collect()
}

fn place(config: &Config, serving: &[Occupant], req: &Request<'_>) -> Result<u32, DeployError> {
    choose(config, serving, req).map(|d| d.id)
}

#[test]
fn a_named_device_is_taken_when_free_or_already_this_models() {
    let config = config();
    let req = Request {
        device: Some(47),
        ..request("new")
    };
    assert_eq!(place(&config, &[], &req).unwrap(), 47);
    assert_eq!(place(&config, &[at("new", 47, 7)], &req).unwrap(), 47);
    let err = place(&config, &[at("other", 47, 7)], &req).unwrap_err();
    assert!(
        matches!(&err, DeployError::DeviceBusy { device: 47, model } if model == "other"),
        "{err}"
    );
}

#[test]
fn a_named_device_must_exist_host_models_and_sit_in_the_named_layer() {
    let config = config();
    let on = |device, layer| Request {
        device: Some(device),
        layer,
        ..request("new")
    };
    assert!(matches!(
        place(&config, &[], &on(70, None)),
        Err(DeployError::Topology(TopologyError::ReservedDevice {
            id: 70,
            layer: 1,
            ..
        }))
    ));
    assert!(matches!(
        place(&config, &[], &on(104, None)),
        Err(DeployError::Topology(TopologyError::UnknownDevice { id: 104, .. }))
    ));
    assert!(matches!(
        place(&config, &[], &on(47, Some(3))),
        Err(DeployError::DeviceNotInLayer {
            device: 47,
            actual: 7,
            requested: 3
        })
    ));
    assert!(matches!(
        place(&config, &[], &on(47, Some(1))),
        Err(DeployError::Topology(TopologyError::ReservedLayer { id: 1, .. }))
    ));
    assert_eq!(place(&config, &[], &on(47, Some(7))).unwrap(), 47);
}

#[test]
fn a_named_device_in_a_full_layer_is_refused_with_the_layers_figures() {
    let config = config();
    let budget = config.topology.layer(2).unwrap().budget_bytes.unwrap();
    let req = Request {
        device: Some(3),
        need: budget,
        ..request("new")
    };
    let err = place(&config, &[at("a", 0, 2)], &req).unwrap_err();
    assert!(
        matches!(&err, DeployError::OverBudget { scope, used: MIB, .. } if scope == "layer 2 (TRAINING)"),
        "{err}"
    );
    // Its own current version does not count: a redeploy in place fits.
    assert_eq!(place(&config, &[at("new", 3, 2)], &req).unwrap(), 3);
}

#[test]
fn a_named_layer_gives_the_lowest_free_device_or_the_models_own() {
    let config = config();
    let req = Request {
        layer: Some(2),
        ..request("new")
    };
    assert_eq!(place(&config, &[], &req).unwrap(), 0);
    assert_eq!(place(&config, &[at("a", 0, 2), at("b", 1, 2)], &req).unwrap(), 2);
    assert_eq!(
        place(&config, &[at("a", 0, 2), at("new", 9, 2)], &req).unwrap(),
        9,
        "it stays where it serves"
    );
    assert_eq!(
        place(&config, &[at("new", 47, 7)], &req).unwrap(),
        0,
        "serving in another layer: it moves to the first free device"
    );
}

#[test]
fn a_named_layer_without_a_free_device_room_or_hosting_is_refused() {
    let config = config();
    let cosmic = Request {
        layer: Some(5),
        ..request("new")
    };
    let err = place(&config, &filled(31..=36, 5), &cosmic).unwrap_err();
    assert!(
        matches!(&err, DeployError::NoFreeDevice { scope } if scope == "layer 5 (COSMIC)"),
        "{err}"
    );
    let system = Request {
        layer: Some(1),
        ..request("new")
    };
    assert!(matches!(
        place(&config, &[], &system),
        Err(DeployError::Topology(TopologyError::ReservedLayer { id: 1, .. }))
    ));
    let unknown = Request {
        layer: Some(10),
        ..request("new")
    };
    assert!(matches!(
        place(&config, &[], &unknown),
        Err(DeployError::Topology(TopologyError::UnknownLayer { id: 10, .. }))
    ));
    // Room is checked before devices: a full layer says so, not "no device".
    let budget = config.topology.layer(5).unwrap().budget_bytes.unwrap();
    let too_big = Request {
        need: budget + 1,
        ..cosmic
    };
    assert!(matches!(
        place(&config, &filled(31..=36, 5), &too_big),
        Err(DeployError::OverBudget { .. })
    ));
}

#[test]
fn without_a_device_or_layer_a_serving_model_stays_on_its_device() {
    let config = config();
    let serving = [at("new", 47, 7)];
    assert_eq!(place(&config, &serving, &request("new")).unwrap(), 47);
    // Even when a classification would choose elsewhere: clearance is checked
    // on the chosen layer afterwards, by the pipeline.
    let classified = Request {
        classification: Some(9),
        ..request("new")
    };
    assert_eq!(place(&config, &serving, &classified).unwrap(), 47);
    // Its layer without room is a refusal, not a move.
    let budget = config.topology.layer(7).unwrap().budget_bytes.unwrap();
    let too_big = Request {
        need: budget + 1,
        ..request("new")
    };
    assert!(matches!(
        place(&config, &serving, &too_big),
        Err(DeployError::OverBudget { scope, .. }) if scope == "layer 7 (EXTENDED)"
    ));
}

#[test]
fn a_new_model_goes_to_the_lowest_hosting_layer_at_or_above_its_classification() {
    let config = config();
    // Layer 1 is lower but reserved.
    assert_eq!(place(&config, &[], &request("new")).unwrap(), 0);
    let classified = |level| Request {
        classification: Some(level),
        ..request("new")
    };
    assert_eq!(place(&config, &[], &classified(1)).unwrap(), 0);
    assert_eq!(place(&config, &[], &classified(5)).unwrap(), 31);
    assert_eq!(place(&config, &[], &classified(9)).unwrap(), 59);
    // Busy devices are skipped, then full layers.
    assert_eq!(place(&config, &[at("a", 0, 2)], &request("new")).unwrap(), 1);
    assert_eq!(place(&config, &filled(0..=14, 2), &request("new")).unwrap(), 15);
    let training = config.topology.layer(2).unwrap().budget_bytes.unwrap();
    let heavy = [Occupant {
        bytes: training,
        ..at("a", 0, 2)
    }];
    assert_eq!(place(&config, &heavy, &request("new")).unwrap(), 15);
}

#[test]
fn when_no_layer_can_take_it_each_layer_says_why() {
    let config = config();
    let executive = config.topology.layer(9).unwrap().budget_bytes.unwrap();
    let mut serving = filled(51..=58, 8);
    serving.push(Occupant {
        bytes: executive,
        ..at("big", 59, 9)
    });
    let req = Request {
        classification: Some(8),
        ..request("new")
    };
    match place(&config, &serving, &req).unwrap_err() {
        DeployError::NoPlacement { reasons } => {
            assert_eq!(reasons.len(), 2, "{reasons:?}");
            assert_eq!(reasons[0], "layer 8: no free device");
            assert!(reasons[1].starts_with("layer 9 (EXECUTIVE) cannot take"), "{reasons:?}");
        }
        other => panic!("expected NoPlacement, got {other}"),
    }
    let above = Request {
        classification: Some(10),
        ..request("new")
    };
    match place(&config, &[], &above).unwrap_err() {
        DeployError::NoPlacement { reasons } => {
            assert_eq!(reasons, ["no layer at or above level 10 hosts models"]);
        }
        other => panic!("expected NoPlacement, got {other}"),
    }
}

#[test]
fn the_hosts_memory_limits_every_layer() {
    let mut config = config();
    config.memory.available_bytes = GIB;
    let req = Request {
        classification: Some(8),
        need: 2 * GIB,
        ..request("new")
    };
    match place(&config, &[], &req).unwrap_err() {
        DeployError::NoPlacement { reasons } => {
            assert_eq!(reasons.len(), 2, "layers 8 and 9: {reasons:?}");
            assert!(
                reasons.iter().all(|r| r.contains("the host (memory.available_gb)")),
                "{reasons:?}"
            );
        }
        other => panic!("expected NoPlacement, got {other}"),
    }
}

#[test]
fn the_registry_is_read_as_one_snapshot_of_what_serves() {
    let config = config();
    let registry = registry([record("a", 0, 2, MIB, 0), record("b", 1, 2, MIB, 0)]);
    let placed = choose(&config, &registry, &request("new")).unwrap();
    assert_eq!(placed.id, 2);
    let stay = choose(&config, &registry, &request("b")).unwrap();
    assert_eq!(stay.id, 1);
}
