//! What identifying and authorising a caller adds to each inference
//! request: `Policy::identify` on the config snapshot, then `authorise` twice
//! (connect, then the model's layer), as `serve::gate` does; for mutual TLS
//! also reading the client certificate's names. Medians of several runs, in
//! nanoseconds per request. Run with `bench/identity.sh`.

use std::hint::black_box;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use dsmild::access::{Action, Limits, Peer, Policy, PrincipalRule, Role, authorise};

const RUNS: usize = 9;
const ROUNDS: u32 = 200_000;

fn policy(principals: usize) -> Policy {
    let rule = |i: usize| PrincipalRule {
        name: format!("p{i}").into(),
        role: Role::Client,
        clearance: 5,
        uids: vec![10_000 + i as u32],
        gids: vec![20_000 + i as u32],
        member_uids: vec![30_000 + i as u32],
        certificate_names: vec![format!("client-{i}.example")],
        limits: None,
    };
    Policy {
        socket_group: "dsmil".into(),
        principals: (0..principals).map(rule).collect(),
        tcp_anonymous_clearance: None,
        limits: Limits {
            inferences: 64,
            deploys: 2,
        },
        daemon_uid: 999,
    }
}

/// Median ns per call of `f` over RUNS runs of ROUNDS calls.
fn median_ns(mut f: impl FnMut(u32) -> bool) -> f64 {
    let mut runs: Vec<f64> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            let mut allowed = 0u32;
            for i in 0..ROUNDS {
                allowed += u32::from(f(i));
            }
            assert_eq!(allowed, ROUNDS, "every call in the benchmark is allowed");
            started.elapsed().as_nanos() as f64 / f64::from(ROUNDS)
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[RUNS / 2]
}

fn main() {
    let infer = Action::Infer { model: "m", layer: 5 };
    println!("| caller | principals in config | ns per request (median of {RUNS}) |");
    println!("|---|---|---|");
    for principals in [1, 16, 128] {
        let snapshot = RwLock::new(Arc::new(policy(principals)));
        // The last principal, matched by membership: the longest scan.
        let uid = 30_000 + principals as u32 - 1;
        let ns = median_ns(|_| {
            let policy = Arc::clone(&snapshot.read().unwrap());
            let caller = policy.identify(black_box(Peer::Unix {
                uid,
                gid: 1,
                pid: Some(7),
            }));
            authorise(&caller, &Action::Connect).is_ok() && authorise(&caller, black_box(&infer)).is_ok()
        });
        println!("| unix socket (SO_PEERCRED), group member | {principals} | {ns:.0} |");
    }

    let mut params = rcgen::CertificateParams::new(vec!["client-15.example".to_owned()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "client-15");
    let key = rcgen::KeyPair::generate().unwrap();
    let der = params.self_signed(&key).unwrap().der().to_vec();
    let snapshot = RwLock::new(Arc::new(policy(16)));
    let ns = median_ns(|_| {
        let policy = Arc::clone(&snapshot.read().unwrap());
        let certificate = dsmild::serve::tls::certificate_of(black_box(&der));
        let caller = policy.identify(Peer::Tcp {
            addr: None,
            tls: true,
            certificate,
        });
        authorise(&caller, &Action::Connect).is_ok() && authorise(&caller, black_box(&infer)).is_ok()
    });
    println!("| TCP with a client certificate (parsed per request) | 16 | {ns:.0} |");
}
