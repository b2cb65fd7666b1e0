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
                ..rule()
            },
            PrincipalRule {
                name: "apps".into(),
                role: Role::Client,
                clearance: 5,
                uids: vec![],
                gids: vec![2000],
                member_uids: vec![3100],
                ..rule()
            },
            PrincipalRule {
                name: "ops".into(),
                role: Role::Operator,
                clearance: 7,
                uids: vec![1003],
                gids: vec![],
                certificate_names: vec!["ops-console.example".into()],
                limits: Some(Limits {
                    inferences: 4,
                    deploys: 1,
                }),
                ..rule()
            },
        ],
        tcp_anonymous_clearance: Some(9),
        limits: Limits {
            inferences: 64,
            deploys: 2,
        },
        daemon_uid: 999,
    }
}

fn rule() -> PrincipalRule {
    PrincipalRule {
        name: "x".into(),
        role: Role::Viewer,
        clearance: 1,
        uids: vec![],
        gids: vec![],
        member_uids: vec![],
        certificate_names: vec![],
        limits: None,
    }
}

fn tcp(certificate: Option<&[&str]>) -> Peer {
    Peer::Tcp {
        addr: Some("127.0.0.1:4000".parse().unwrap()),
        tls: certificate.is_some(),
        certificate: certificate.map(|names| {
            Arc::new(Certificate {
                subject: format!("CN={}", names[0]),
                names: names.iter().map(|n| n.to_string()).collect(),
            })
        }),
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
    let c = policy().identify(tcp(None));
    assert_eq!(authorise(&c, &infer(9)), Ok(()));
    let e = authorise(&c, &Action::View).unwrap_err();
    assert!(matches!(e, Denial::Unauthenticated { .. }), "{e}");
    assert!(e.to_string().contains("tcp 127.0.0.1:4000"), "{e}");
    assert!(e.to_string().contains("client certificate"), "{e}");

    let closed = Policy {
        tcp_anonymous_clearance: None,
        ..policy()
    };
    let c = closed.identify(Peer::Tcp {
        addr: None,
        tls: false,
        certificate: None,
    });
    assert!(matches!(authorise(&c, &infer(1)), Err(Denial::Unauthenticated { .. })));
}

#[test]
fn a_client_certificate_names_its_principal_and_an_unknown_one_is_nobody() {
    let ops = policy().identify(tcp(Some(&["laptop-7", "ops-console.example"])));
    let p = ops.principal.as_ref().expect("matched by an alternative name");
    assert_eq!((&*p.name, p.role, p.clearance), ("ops", Role::Operator, 7));
    assert_eq!(ops.peer.transport(), "tls");
    assert_eq!(authorise(&ops, &Action::View), Ok(()), "Control over mTLS");
    let deploy = |layer| Action::Deploy { model: "m", layer };
    assert_eq!(authorise(&ops, &deploy(Some(7))), Ok(()));
    assert!(authorise(&ops, &deploy(Some(8))).is_err());
    assert_eq!(
        p.limits,
        Limits {
            inferences: 4,
            deploys: 1
        }
    );

    // Presenting a certificate nobody is configured for is not anonymous.
    let stranger = policy().identify(tcp(Some(&["someone-else.example"])));
    assert_eq!(stranger.principal, None);
    let e = authorise(&stranger, &infer(1)).unwrap_err();
    assert!(e.to_string().contains("certificate \"CN=someone-else.example\""), "{e}");
}

#[test]
fn supplementary_group_members_are_covered_after_uids_and_primary_groups() {
    let member = unix(3100, 3100);
    assert_eq!(member.name(), "apps", "listed as a member of gid 2000");
    assert_eq!(authorise(&member, &infer(5)), Ok(()));
    // A uid rule still wins over membership.
    let mut p = policy();
    p.principals[0].uids.push(3100);
    assert_eq!(
        p.identify(Peer::Unix {
            uid: 3100,
            gid: 3100,
            pid: None
        })
        .name(),
        "watch"
    );
    // Principals without their own limits get the policy's.
    assert_eq!(member.principal.unwrap().limits.inferences, 64);
}
