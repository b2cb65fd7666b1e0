use super::*;

fn topology() -> Topology {
    crate::config::load(None, &[]).unwrap().topology
}

#[test]
fn id_lists_parse_and_format_as_ranges() {
    assert_eq!(parse_id_list("0-3,7, 9-10").unwrap(), vec![0, 1, 2, 3, 7, 9, 10]);
    assert_eq!(format_id_list(&[0, 1, 2, 3, 7, 9, 10]), "0-3,7,9-10");
    assert!(parse_id_list("3-1").unwrap_err().contains("backwards"));
    assert!(parse_id_list("1,1").unwrap_err().contains("twice"));
    assert!(parse_id_list("a").unwrap_err().contains("not a device id"));
    assert!(parse_id_list("").is_err());
}

#[test]
fn devices_know_their_layer_and_reserved_ones_host_nothing() {
    let t = topology();
    assert_eq!(t.device(47).unwrap().layer, 7);
    assert_eq!(t.layer_of(t.device(0).unwrap()).name, "TRAINING");
    assert!(matches!(
        t.hosting_device(70),
        Err(TopologyError::ReservedDevice { id: 70, layer: 1, .. })
    ));
    assert!(matches!(
        t.device(104),
        Err(TopologyError::UnknownDevice { id: 104, count: 104 })
    ));
    assert!(matches!(
        t.hosting_layer(1),
        Err(TopologyError::ReservedLayer { id: 1, .. })
    ));
    assert!(matches!(t.layer(10), Err(TopologyError::UnknownLayer { id: 10, .. })));
    assert!(t.hosting_device(66).is_ok());
}

#[test]
fn clearance_refuses_write_down_only() {
    let t = topology();
    let secret = t.layer(3).unwrap();
    assert!(check_deploy_clearance(&t, secret, 3).is_ok());
    assert!(check_deploy_clearance(&t, secret, 2).is_ok(), "writing up is allowed");
    let err = check_deploy_clearance(&t, secret, 5).unwrap_err();
    assert!(matches!(
        err,
        TopologyError::WriteDown {
            classification: 5,
            layer: 3,
            ..
        }
    ));
    assert!(err.to_string().contains("needs a layer ≥ 5"));
    assert!(matches!(
        check_deploy_clearance(&t, secret, 12),
        Err(TopologyError::UnknownLevel(12))
    ));
}

#[test]
fn device_overrides_replace_the_layer_target() {
    let layers = vec![LayerSpec {
        id: 2,
        name: "A".into(),
        devices: "0-3".into(),
        reserved: false,
        budget_bytes: Some(1),
        budget_gb: Some(1.0),
        target: Some(Target::Npu),
        max_parameters: None,
    }];
    let t = Topology::new(
        4,
        layers,
        vec![DeviceSpec {
            id: 2,
            target: Some(Target::Cpu),
            role: None,
        }],
    )
    .unwrap();
    assert_eq!(t.device(1).unwrap().target, Some(Target::Npu));
    assert_eq!(t.device(2).unwrap().target, Some(Target::Cpu));
}
