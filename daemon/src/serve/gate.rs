//! The serving side of access control: who is calling (the peer the
//! listener saw, in the request's extensions), the one check each handler
//! makes ([`crate::access::authorise`]), and the audit of every denial.
//!
//! Decides nothing itself: the rules are `access`'s, the principals the
//! config's (the snapshot in force, so a reload changes them), the status
//! codes `status`'s.

use std::sync::Arc;

use tonic::Request;
use tonic::transport::server::{TcpConnectInfo, UdsConnectInfo};

use crate::access::{self, Action, Caller, Denial, Peer};
use crate::deploy::Deployer;
use crate::store::{EventCaller, EventRecord};
use dsmil_kinds::EventKind;

#[derive(Clone)]
pub struct Gate {
    deployer: Arc<Deployer>,
}

impl Gate {
    pub fn new(deployer: Arc<Deployer>) -> Gate {
        Gate { deployer }
    }

    /// Who sent `request`: SO_PEERCRED on the Unix socket, the address on
    /// TCP. A request with neither came through the in-process REST front
    /// (HTTP over TCP), so it is a network caller too.
    pub fn caller<T>(&self, request: &Request<T>) -> Caller {
        let peer = if let Some(uds) = request.extensions().get::<UdsConnectInfo>() {
            match uds.peer_cred {
                Some(cred) => Peer::Unix {
                    uid: cred.uid(),
                    gid: cred.gid(),
                    pid: cred.pid(),
                },
                // The kernel always answers SO_PEERCRED on a Unix socket;
                // should it not, the caller is nobody.
                None => {
                    return Caller {
                        peer: Peer::Unix {
                            uid: u32::MAX,
                            gid: u32::MAX,
                            pid: None,
                        },
                        principal: None,
                    };
                }
            }
        } else {
            let addr = request
                .extensions()
                .get::<TcpConnectInfo>()
                .and_then(TcpConnectInfo::remote_addr);
            Peer::Tcp { addr }
        };
        self.deployer.config().access.identify(peer)
    }

    /// Allows `action`, or audits the denial (a `denied` event naming the
    /// caller) and returns it.
    pub async fn check(&self, caller: &Caller, action: Action<'_>) -> Result<(), Denial> {
        let Err(denial) = access::authorise(caller, &action) else {
            return Ok(());
        };
        let event = EventRecord {
            layer: action.layer(),
            ..EventRecord::of(EventKind::Denied, model_of(&action), denial.to_string())
        }
        .by(&event_caller(caller));
        let deployer = Arc::clone(&self.deployer);
        // Journaled before the caller hears the answer, like every refusal.
        let _ = tokio::task::spawn_blocking(move || deployer.audit(event)).await;
        Err(denial)
    }
}

fn model_of<'a>(action: &Action<'a>) -> &'a str {
    match action {
        Action::ReadModel { model, .. }
        | Action::Infer { model, .. }
        | Action::Deploy { model, .. }
        | Action::Undeploy { model, .. }
        | Action::Feedback { model, .. } => model,
        Action::Connect
        | Action::View
        | Action::ViewIn { .. }
        | Action::Rollback { .. }
        | Action::Quantize
        | Action::Reload => "",
    }
}

/// The caller as events record it.
pub fn event_caller(caller: &Caller) -> EventCaller {
    let (uid, pid, peer) = match caller.peer {
        Peer::Unix { uid, pid, .. } => (Some(uid), pid, String::new()),
        Peer::Tcp { addr } => (None, None, addr.map(|a| a.to_string()).unwrap_or_default()),
    };
    EventCaller {
        principal: caller.name().to_owned(),
        uid,
        pid,
        transport: caller.peer.transport().to_owned(),
        peer,
    }
}
