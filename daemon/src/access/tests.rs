//! The rules of [`super::authorise`], one role and clearance at a time.

use super::*;

fn policy() -> Policy {
    Policy {
        socket_group: "dsmil".into(),
        principals: vec![
            PrincipalRule {
                name: "watch".into(),
                role: Role::Viewer,
                clearance: 5,
                uids: vec![1001],
                gids: vec![],
            },
            PrincipalRule {
                name: "apps".into(),
                role: Role::Client,
                clearance: 5,
                uids: vec![],
                gids: vec![2000],
            },
            PrincipalRule {
                name: "ops".into(),
                role: Role::Operator,
                clearance: 7,
                uids: vec![1003],
                gids: vec![],
            },
        ],
        tcp_anonymous_clearance: Some(9),
        daemon_uid: 999,
    }
}

fn unix(uid: u32, gid: u32) -> Caller {
    policy().identify(Peer::Unix { uid, gid, pid: Some(1) })
}

fn infer(layer: u8) -> Action<'static> {
    Action::Infer { model: "m", layer }
}

#[test]
fn root_and_the_daemon_are_admin_at_nine() {
    for uid in [0, 999] {
        let c = unix(uid, 5);
        assert_eq!(
            c.principal.as_ref().map(|p| (p.role, p.clearance)),
            Some((Role::Admin, 9))
        );
        assert_eq!(authorise(&c, &Action::Reload), Ok(()));
        assert_eq!(authorise(&c, &infer(9)), Ok(()));
    }
}

#[test]
fn unknown_uids_are_unauthenticated_for_everything() {
    let c = unix(4242, 4242);
    assert_eq!(c.principal, None);
    for action in [Action::Connect, Action::View, infer(1), Action::Reload] {
        let e = authorise(&c, &action).unwrap_err();
        assert!(matches!(e, Denial::Unauthenticated { .. }), "{e}");
        assert!(e.to_string().contains("uid 4242"), "{e}");
    }
}

#[test]
fn roles_and_clearances_are_both_needed() {
    let viewer = unix(1001, 100);
    assert_eq!(authorise(&viewer, &Action::View), Ok(()));
    let e = authorise(
        &viewer,
        &Action::Deploy {
            model: "m",
            layer: Some(3),
        },
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("\"watch\"") && e.to_string().contains("needs operator"),
        "{e}"
    );
    assert!(authorise(&viewer, &infer(1)).is_err());

    // By group.
    let client = unix(5555, 2000);
    assert_eq!(authorise(&client, &infer(5)), Ok(()));
    let e = authorise(&client, &infer(7)).unwrap_err();
    assert!(matches!(e, Denial::Forbidden { clearance: 5, .. }), "{e}");
    assert!(e.to_string().contains("clearance 7"), "{e}");

    let ops = unix(1003, 100);
    let deploy = |layer| Action::Deploy { model: "m", layer };
    assert_eq!(authorise(&ops, &deploy(Some(7))), Ok(()));
    assert!(authorise(&ops, &deploy(Some(9))).is_err());
    assert!(
        authorise(&ops, &deploy(None)).is_err(),
        "auto placement may pick layer 9"
    );
    assert!(authorise(&ops, &Action::Reload).is_err());
    assert!(ops.sees(7) && !ops.sees(8));
}

#[test]
fn tcp_is_an_anonymous_client_for_inference_only() {
    let c = policy().identify(Peer::Tcp {
        addr: Some("127.0.0.1:4000".parse().unwrap()),
    });
    assert_eq!(authorise(&c, &infer(9)), Ok(()));
    let e = authorise(&c, &Action::View).unwrap_err();
    assert!(matches!(e, Denial::Unauthenticated { .. }), "{e}");
    assert!(e.to_string().contains("tcp 127.0.0.1:4000"), "{e}");

    let closed = Policy {
        tcp_anonymous_clearance: None,
        ..policy()
    };
    let c = closed.identify(Peer::Tcp { addr: None });
    assert!(matches!(authorise(&c, &infer(1)), Err(Denial::Unauthenticated { .. })));
}

/// The identity check an inference request pays: identify the peer, then
/// `authorise` twice (connect, then the model's layer). A benchmark, not a
/// timed test: `cargo test --release -p dsmild --lib access::tests::identity_check_cost -- --ignored --nocapture`.
#[test]
#[ignore = "a benchmark; run by hand"]
fn identity_check_cost() {
    let policy = std::sync::RwLock::new(std::sync::Arc::new(policy()));
    let rounds = 2_000_000u32;
    let started = std::time::Instant::now();
    let mut allowed = 0u32;
    for i in 0..rounds {
        // As serve::gate does: the config snapshot, then the one function.
        let snapshot = std::sync::Arc::clone(&policy.read().unwrap());
        let caller = snapshot.identify(Peer::Unix {
            // Matched by group, after every uid rule: the longest scan.
            uid: 5555 + (i & 1),
            gid: 2000,
            pid: Some(7),
        });
        if authorise(&caller, &Action::Connect).is_ok() && authorise(&caller, &infer(5)).is_ok() {
            allowed += 1;
        }
    }
    let per = started.elapsed() / rounds;
    println!("identity check: {per:?} per request ({allowed} of {rounds} allowed)");
    assert!(allowed > 0);
}
