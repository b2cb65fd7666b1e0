//! The serving side of access control: who is calling (the peer the
//! listener saw, in the request's extensions), the one check each handler
//! makes ([`crate::access::authorise`]), the audit of every denial, and each
//! principal's share of the daemon (in-flight inference and deploy bounds).
//!
//! Decides nothing itself: the rules are `access`'s, the principals the
//! config's (the snapshot in force, so a reload changes them), the status
//! codes `status`'s. Denial events are rate limited per caller (a hostile
//! caller must not be able to fill the journal); suppressed ones are counted
//! in the next event recorded for that caller.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Request;
use tonic::transport::server::UdsConnectInfo;

use crate::access::{self, Action, Caller, Denial, Peer, Saturated};
use crate::deploy::Deployer;
use crate::store::{EventCaller, EventRecord};
use dsmil_kinds::EventKind;

/// Denial events recorded per caller per window; the rest are counted.
const DENIALS_PER_WINDOW: u32 = 10;
const DENIAL_WINDOW: Duration = Duration::from_secs(60);
/// Callers tracked for the rate limit (TCP addresses come and go); when
/// full, expired windows are dropped, then everything.
const TRACKED_CALLERS: usize = 4096;

#[derive(Clone)]
pub struct Gate {
    deployer: Arc<Deployer>,
    shares: Arc<Shares>,
    denials: Arc<Mutex<HashMap<String, Window>>>,
}

/// A caller's denial window: when it began, events recorded, suppressed.
struct Window {
    start: Instant,
    recorded: u32,
    suppressed: u32,
}

/// One semaphore per principal and kind of work, sized by the principal's
/// limit (rebuilt when a reload changes it). Keyed by principal name, and
/// only identified callers get this far, so the map stays as small as the
/// config.
#[derive(Default)]
struct Shares {
    inferences: ShareMap,
    deploys: ShareMap,
}

/// Principal → (its limit, its semaphore).
type ShareMap = Mutex<HashMap<Arc<str>, (u32, Arc<Semaphore>)>>;

/// Held while an admitted call runs; dropping it frees the share.
pub struct Share {
    _permit: Option<OwnedSemaphorePermit>,
}

impl Gate {
    pub fn new(deployer: Arc<Deployer>) -> Gate {
        Gate {
            deployer,
            shares: Arc::default(),
            denials: Arc::default(),
        }
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
            let tls = request
                .extensions()
                .get::<tonic::transport::server::TlsConnectInfo<tonic::transport::server::TcpConnectInfo>>()
                .is_some();
            let certificate = request
                .peer_certs()
                .and_then(|chain| chain.first().and_then(|leaf| super::tls::certificate_of(leaf)));
            Peer::Tcp {
                addr: request.remote_addr(),
                tls,
                certificate,
            }
        };
        self.deployer.config().access.identify(peer)
    }

    /// Admits one inference request of `caller` within its principal's
    /// bound, or says it is saturated.
    pub fn admit_inference(&self, caller: &Caller) -> Result<Share, Saturated> {
        let limit = caller.principal.as_ref().map_or(0, |p| p.limits.inferences);
        admit(
            &self.shares.inferences,
            caller,
            limit,
            "inference requests",
            "max_concurrent_inferences",
        )
    }

    /// Admits one deploy (or quantization) of `caller`, likewise.
    pub fn admit_deploy(&self, caller: &Caller) -> Result<Share, Saturated> {
        let limit = caller.principal.as_ref().map_or(0, |p| p.limits.deploys);
        admit(&self.shares.deploys, caller, limit, "deploys", "max_concurrent_deploys")
    }

    /// Allows `action`, or audits the denial (a `denied` event naming the
    /// caller) and returns it.
    pub async fn check(&self, caller: &Caller, action: Action<'_>) -> Result<(), Denial> {
        let Err(denial) = access::authorise(caller, &action) else {
            return Ok(());
        };
        let Some(suppressed) = self.should_record(caller) else {
            return Err(denial);
        };
        let mut message = denial.to_string();
        if suppressed > 0 {
            message.push_str(&format!(
                " ({suppressed} more denials of this caller were not recorded in the last {} s)",
                DENIAL_WINDOW.as_secs()
            ));
        }
        let event = EventRecord {
            layer: action.layer(),
            ..EventRecord::of(EventKind::Denied, model_of(&action), message)
        }
        .by(&event_caller(caller));
        let deployer = Arc::clone(&self.deployer);
        // Journaled before the caller hears the answer, like every refusal.
        let _ = tokio::task::spawn_blocking(move || deployer.audit(event)).await;
        Err(denial)
    }

    /// Whether this denial is recorded: Some(suppressed since the last
    /// recorded one) if so, None if the caller is over its rate.
    fn should_record(&self, caller: &Caller) -> Option<u32> {
        let key = match &caller.peer {
            Peer::Unix { uid, .. } => format!("uid {uid}"),
            Peer::Tcp {
                certificate: Some(cert),
                ..
            } => format!("certificate {}", cert.subject),
            // The address without the port: one host is one caller.
            Peer::Tcp { addr, .. } => format!("tcp {:?}", addr.map(|a| a.ip())),
        };
        let mut windows = self.denials.lock().unwrap_or_else(|p| p.into_inner());
        record_denial(&mut windows, key, Instant::now())
    }
}

/// The rate limit of denial events for one caller `key` at `now`:
/// Some(suppressed since the last recorded one) to record, None to count.
fn record_denial(windows: &mut HashMap<String, Window>, key: String, now: Instant) -> Option<u32> {
    if windows.len() >= TRACKED_CALLERS && !windows.contains_key(&key) {
        windows.retain(|_, w| now.duration_since(w.start) < DENIAL_WINDOW);
        if windows.len() >= TRACKED_CALLERS {
            windows.clear();
        }
    }
    let window = windows.entry(key).or_insert(Window {
        start: now,
        recorded: 0,
        suppressed: 0,
    });
    if now.duration_since(window.start) >= DENIAL_WINDOW {
        let suppressed = window.suppressed;
        *window = Window {
            start: now,
            recorded: 1,
            suppressed: 0,
        };
        return Some(suppressed);
    }
    if window.recorded < DENIALS_PER_WINDOW {
        window.recorded += 1;
        Some(std::mem::take(&mut window.suppressed))
    } else {
        window.suppressed += 1;
        None
    }
}

fn admit(
    shares: &ShareMap,
    caller: &Caller,
    limit: u32,
    what: &'static str,
    key: &'static str,
) -> Result<Share, Saturated> {
    let Some(principal) = caller.principal.as_ref().filter(|_| limit > 0) else {
        return Ok(Share { _permit: None });
    };
    let semaphore = {
        let mut map = shares.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map
            .entry(Arc::clone(&principal.name))
            .or_insert_with(|| (limit, Arc::new(Semaphore::new(limit as usize))));
        if entry.0 != limit {
            *entry = (limit, Arc::new(Semaphore::new(limit as usize)));
        }
        Arc::clone(&entry.1)
    };
    semaphore
        .try_acquire_owned()
        .map(|permit| Share { _permit: Some(permit) })
        .map_err(|_| Saturated {
            principal: principal.name.to_string(),
            what,
            limit,
            key,
        })
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
    let (uid, pid, peer) = match &caller.peer {
        Peer::Unix { uid, pid, .. } => (Some(*uid), *pid, String::new()),
        Peer::Tcp { addr, certificate, .. } => {
            let mut peer = addr.map(|a| a.to_string()).unwrap_or_default();
            if let Some(cert) = certificate {
                peer.push_str(&format!(" certificate {}", cert.subject));
            }
            (None, None, peer)
        }
    };
    EventCaller {
        principal: caller.name().to_owned(),
        uid,
        pid,
        transport: caller.peer.transport().to_owned(),
        peer,
    }
}

#[cfg(test)]
mod tests {
    use crate::access::{Caller, Limits, Peer, Principal, Role};

    fn caller(name: &str) -> Caller {
        Caller {
            peer: Peer::Unix {
                uid: 1000,
                gid: 1000,
                pid: None,
            },
            principal: Some(Principal {
                name: name.into(),
                role: Role::Client,
                clearance: 9,
                inference_only: false,
                limits: Limits {
                    inferences: 2,
                    deploys: 1,
                },
            }),
        }
    }

    #[test]
    fn denial_events_are_rate_limited_per_caller_and_the_rest_counted() {
        let mut windows = std::collections::HashMap::new();
        let t0 = std::time::Instant::now();
        let mut record = |key: &str, at: u64| {
            super::record_denial(&mut windows, key.to_owned(), t0 + std::time::Duration::from_secs(at))
        };
        let recorded = (0..15).filter(|_| record("uid 1004", 1).is_some()).count();
        assert_eq!(recorded, super::DENIALS_PER_WINDOW as usize);
        assert_eq!(record("uid 1005", 2), Some(0), "another caller has its own window");
        // The window over, the next event says how many were not recorded.
        assert_eq!(record("uid 1004", 61), Some(5));
        assert_eq!(record("uid 1004", 62), Some(0));
    }

    #[test]
    fn each_principal_has_its_own_bounded_share() {
        let shares = std::sync::Mutex::default();
        let admit =
            |c: &Caller, limit| super::admit(&shares, c, limit, "inference requests", "max_concurrent_inferences");
        let (a, b) = (caller("a"), caller("b"));
        let first = admit(&a, 2).unwrap();
        let _second = admit(&a, 2).unwrap();
        let refused = admit(&a, 2).err().expect("a third request is over the bound");
        assert_eq!((refused.principal.as_str(), refused.limit), ("a", 2));
        assert!(
            refused.to_string().contains("access.max_concurrent_inferences"),
            "{refused}"
        );
        // Another principal is not starved by the first.
        let _other = admit(&b, 2).unwrap();
        drop(first);
        let _again = admit(&a, 2).expect("a finished request frees its share");
        // 0 is no bound; a changed bound (a reload) takes effect at once.
        for _ in 0..10 {
            std::mem::forget(admit(&a, 0).unwrap());
        }
        let _bigger = admit(&a, 5).unwrap();
        // Nobody (no principal) is never admitted this far, but takes no share.
        let nobody = Caller {
            principal: None,
            ..caller("x")
        };
        assert!(admit(&nobody, 1).is_ok());
    }
}
