//! How a deployment's record and the config combine into its launch: the
//! host-sized defaults, a deploy's own choices, batching and pinning.

use std::time::Duration;

use dsmil_kinds::BackendKind;

use super::{Launch, pinned_cpus};
use crate::config::{Config, default_workers};
use crate::deploy::admission::tests::record;
use crate::store::ServingChoice;

/// The shipped config on a host with `cpus` CPUs.
fn config_on(cpus: usize) -> Config {
    let mut config = crate::config::load(None, &[]).unwrap();
    config.serving.host_cpus = (0..cpus).collect();
    config.serving.workers_per_deployment = default_workers(cpus);
    config
}

/// A deployment that chose nothing.
fn plain() -> crate::store::DeploymentRecord {
    crate::store::DeploymentRecord {
        workers: 0,
        max_batch: 0,
        ..record("m", 47, 7, 0, 0)
    }
}

#[test]
fn by_default_the_instances_share_the_hosts_cpus() {
    assert_eq!((default_workers(1), default_workers(2), default_workers(16)), (1, 2, 2));
    // As a deploy records it: the config's worker count, resolved.
    let on = |cpus| {
        let config = config_on(cpus);
        let r = crate::store::DeploymentRecord {
            workers: config.serving.workers_per_deployment as u32,
            ..plain()
        };
        let l = Launch::of(&r, &config);
        (l.workers, l.options.intra_op_threads)
    };
    assert_eq!(on(1), (1, 1));
    assert_eq!(on(2), (2, 1));
    assert_eq!(on(8), (2, 4));
    // A record from before host-sized defaults keeps its one worker.
    assert_eq!(Launch::of(&plain(), &config_on(8)).workers, 1);
    // OpenVINO sizes its own streams from its performance hint.
    let ov = crate::store::DeploymentRecord {
        backend: BackendKind::OpenVino,
        ..plain()
    };
    assert_eq!(Launch::of(&ov, &config_on(8)).options.intra_op_threads, 0);
}

#[test]
fn a_deploys_own_choices_win_over_the_config() {
    let mut config = config_on(8);
    assert!(Launch::of(&plain(), &config).batching.is_none(), "off by default");
    config.serving.dynamic_batching = true;
    config.serving.max_queue_delay = Duration::from_micros(100);
    config.serving.preferred_batch_sizes = vec![4];
    let defaults = Launch::of(&plain(), &config);
    let batching = defaults.batching.expect("on in the config");
    assert_eq!(
        (batching.delay, batching.preferred),
        (Duration::from_micros(100), vec![4])
    );
    assert_eq!(batching.max_rows as u64, config.serving.max_batch_size);

    // The config's preferred sizes above a deploy's own max batch are left out.
    let small = crate::store::DeploymentRecord {
        max_batch: 2,
        ..plain()
    };
    assert_eq!(
        Launch::of(&small, &config).batching.unwrap().preferred,
        Vec::<usize>::new()
    );

    let chosen = crate::store::DeploymentRecord {
        workers: 4,
        max_batch: 16,
        serving: ServingChoice {
            intra_op_threads: Some(3),
            dynamic_batching: Some(true),
            max_queue_delay_us: Some(500),
            preferred_batch_sizes: vec![8, 16],
        },
        ..plain()
    };
    let l = Launch::of(&chosen, &config);
    assert_eq!((l.workers, l.options.intra_op_threads), (4, 3));
    let b = l.batching.unwrap();
    assert_eq!(
        (b.max_rows, b.delay, b.preferred),
        (16, Duration::from_micros(500), vec![8, 16])
    );

    let off = crate::store::DeploymentRecord {
        serving: ServingChoice {
            dynamic_batching: Some(false),
            ..ServingChoice::default()
        },
        ..plain()
    };
    assert!(Launch::of(&off, &config).batching.is_none());
}

#[test]
fn pinning_gives_each_instance_its_own_cpus_and_spreads_deployments() {
    assert_eq!(pinned_cpus(&[0, 1, 2, 3], 0, 2, 1), [[0], [1]]);
    assert_eq!(pinned_cpus(&[0, 1, 2, 3], 1, 2, 1), [[2], [3]]);
    assert_eq!(pinned_cpus(&[0, 1, 2, 3], 0, 2, 2), [[0, 1], [2, 3]]);
    // Only the CPUs the process may use, wrapping when there are too few.
    assert_eq!(pinned_cpus(&[4, 6], 0, 3, 1), [[4], [6], [4]]);
    assert!(pinned_cpus(&[], 0, 2, 1).is_empty());

    let mut config = config_on(4);
    assert!(Launch::of(&plain(), &config).cpus.is_empty(), "off by default");
    config.serving.cpu_pinning = true;
    let two = crate::store::DeploymentRecord { workers: 2, ..plain() };
    let l = Launch::of(&two, &config);
    assert_eq!(l.cpus.len(), l.workers);
    assert_eq!(l.instance_options(1).cpus, l.cpus[1]);
}
