//! Who may do what: callers become principals (a role and a clearance) and
//! [`authorise`] is the one function that allows or denies each call.
//!
//! A caller is what the listener knows about the peer: SO_PEERCRED's uid,
//! gid and pid on the Unix socket; on TCP the address and, with mutual TLS,
//! the names of the verified client certificate. [`Policy::identify`] maps it
//! to a [`Principal`]: root and the daemon's own uid are always admin at
//! level 9, then the configured principals by uid, then by the caller's
//! primary gid, then by group membership; a certificate by its subject's
//! common name or a subject alternative name; a TCP caller without a
//! certificate is the anonymous inference client if the config names one
//! ([`Policy::tcp_anonymous_clearance`]); anything else is nobody.
//!
//! Pure: no I/O, no clock, no tonic. The config resolves user and group
//! names to ids; `serve` reads the peer, calls this and maps a [`Denial`] to
//! a status; it never decides itself.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// The highest clearance (and layer) there is.
pub const MAX_CLEARANCE: u8 = 9;

/// What a principal may do, each role including the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Status, lists, events, metrics-like queries.
    Viewer,
    /// Inference.
    Client,
    /// Deploy, undeploy, rollback, feedback, quantize.
    Operator,
    /// Everything, including a config reload.
    Admin,
}

impl Role {
    pub const ALL: &[Role] = &[Role::Viewer, Role::Client, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Client => "client",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a role (viewer, client, operator or admin)"))
    }
}

/// A configured principal: who it covers (ids, resolved by the config) and
/// what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalRule {
    pub name: Arc<str>,
    pub role: Role,
    pub clearance: u8,
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
    /// Members of `gids` as the group database lists them (supplementary
    /// groups, which SO_PEERCRED does not report), resolved with the config.
    pub member_uids: Vec<u32>,
    /// Client-certificate names (subject CN, DNS/email/URI SANs) that are
    /// this principal over mutual TLS.
    pub certificate_names: Vec<String>,
    /// Per-principal bounds, when they differ from the policy's.
    pub limits: Option<Limits>,
}

/// How much one principal may have in flight at once, so one caller cannot
/// starve the others. 0 means no bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub inferences: u32,
    pub deploys: u32,
}

/// The `[access]` section, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The Unix socket's group (mode 0660); a name or a numeric id.
    pub socket_group: String,
    pub principals: Vec<PrincipalRule>,
    /// A TCP (or HTTP) caller without a client certificate is an anonymous
    /// client for inference only, at this clearance; `None` refuses such
    /// callers everything. The Control API is never served to anonymous
    /// callers.
    pub tcp_anonymous_clearance: Option<u8>,
    /// Per-principal bounds unless a principal sets its own.
    pub limits: Limits,
    /// The daemon's own uid (admin at level 9 like root); set at start.
    pub daemon_uid: u32,
}

impl Policy {
    /// The principal a peer is, if any.
    pub fn identify(&self, peer: Peer) -> Caller {
        let configured = |p: &PrincipalRule| Principal {
            name: Arc::clone(&p.name),
            role: p.role,
            clearance: p.clearance,
            inference_only: false,
            limits: p.limits.unwrap_or(self.limits),
        };
        let principal = match &peer {
            Peer::Unix { uid, gid, .. } => {
                let (uid, gid) = (*uid, *gid);
                if uid == 0 || uid == self.daemon_uid {
                    Some(Principal {
                        name: Arc::from(if uid == 0 { "root" } else { "dsmild" }),
                        role: Role::Admin,
                        clearance: MAX_CLEARANCE,
                        inference_only: false,
                        limits: self.limits,
                    })
                } else {
                    self.principals
                        .iter()
                        .find(|p| p.uids.contains(&uid))
                        .or_else(|| self.principals.iter().find(|p| p.gids.contains(&gid)))
                        .or_else(|| self.principals.iter().find(|p| p.member_uids.contains(&uid)))
                        .map(configured)
                }
            }
            // A certificate that names no principal is an unknown caller,
            // not an anonymous one: it claimed an identity we do not grant.
            Peer::Tcp {
                certificate: Some(cert),
                ..
            } => self
                .principals
                .iter()
                .find(|p| p.certificate_names.iter().any(|n| cert.names.contains(n)))
                .map(configured),
            Peer::Tcp { certificate: None, .. } => self.tcp_anonymous_clearance.map(|clearance| Principal {
                name: Arc::from("anonymous"),
                role: Role::Client,
                clearance,
                inference_only: true,
                limits: self.limits,
            }),
        };
        Caller { peer, principal }
    }
}

/// A verified client certificate, as far as identity goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// The subject as printed (RFC 4514 order), for the audit.
    pub subject: String,
    /// The subject's common names and the DNS, email and URI alternative
    /// names: what `certificate_names` match.
    pub names: Vec<String>,
}

/// What the listener knows about the other end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    Unix {
        uid: u32,
        gid: u32,
        pid: Option<i32>,
    },
    /// TCP or HTTP; the address when the transport gave one, whether the
    /// connection is TLS, and the client certificate it verified.
    Tcp {
        addr: Option<SocketAddr>,
        tls: bool,
        certificate: Option<Arc<Certificate>>,
    },
}

impl Peer {
    pub fn transport(&self) -> &'static str {
        match self {
            Peer::Unix { .. } => "unix",
            Peer::Tcp { tls: false, .. } => "tcp",
            Peer::Tcp { tls: true, .. } => "tls",
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Unix {
                uid, pid: Some(pid), ..
            } => write!(f, "uid {uid} pid {pid}"),
            Peer::Unix { uid, pid: None, .. } => write!(f, "uid {uid}"),
            Peer::Tcp { addr, certificate, .. } => {
                f.write_str(self.transport())?;
                if let Some(addr) = addr {
                    write!(f, " {addr}")?;
                }
                if let Some(cert) = certificate {
                    write!(f, " certificate {:?}", cert.subject)?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Shared with the rule: identifying a caller allocates nothing.
    pub name: Arc<str>,
    pub role: Role,
    pub clearance: u8,
    /// The anonymous TCP principal: inference (and the reads around it) only.
    pub inference_only: bool,
    pub limits: Limits,
}

/// A call's caller: the peer, and the principal it maps to (None: unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub peer: Peer,
    pub principal: Option<Principal>,
}

impl Caller {
    /// The principal's name, or "unknown".
    pub fn name(&self) -> &str {
        self.principal.as_ref().map_or("unknown", |p| &p.name)
    }

    /// Whether this caller may see something in `layer` (listing filters).
    pub fn sees(&self, layer: u8) -> bool {
        self.principal.as_ref().is_some_and(|p| p.clearance >= layer)
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.principal {
            Some(p) => write!(f, "{} ({}, clearance {}; {})", p.name, p.role, p.clearance, self.peer),
            None => write!(f, "unknown caller ({})", self.peer),
        }
    }
}

/// What a call wants to do. `layer` is the layer of the model or target;
/// `None` where it cannot be known before the deployer places the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Server-wide inference reads (live, ready, server metadata).
    Connect,
    /// Model-scoped inference reads (metadata, config, readiness, statistics).
    ReadModel {
        model: &'a str,
        layer: u8,
    },
    Infer {
        model: &'a str,
        layer: u8,
    },
    /// The Control API's lists and queries; results are then filtered by
    /// [`Caller::sees`].
    View,
    /// A query about one thing in `layer` (a deployment, a report).
    ViewIn {
        what: &'a str,
        layer: u8,
    },
    /// Deploy into `layer` (None: placement decides, so the whole range).
    Deploy {
        model: &'a str,
        layer: Option<u8>,
    },
    Undeploy {
        model: &'a str,
        layer: u8,
    },
    Rollback {
        target: &'a str,
        layer: u8,
    },
    Feedback {
        model: &'a str,
        layer: u8,
    },
    Quantize,
    Reload,
}

impl Action<'_> {
    /// What the action needs: a role, and clearance for a layer (0: none).
    fn needs(&self) -> (Role, u8) {
        match *self {
            Action::Connect | Action::View => (Role::Viewer, 0),
            Action::ReadModel { layer, .. } | Action::ViewIn { layer, .. } => (Role::Viewer, layer),
            Action::Infer { layer, .. } => (Role::Client, layer),
            Action::Deploy { layer, .. } => (Role::Operator, layer.unwrap_or(MAX_CLEARANCE)),
            Action::Undeploy { layer, .. } | Action::Rollback { layer, .. } | Action::Feedback { layer, .. } => {
                (Role::Operator, layer)
            }
            Action::Quantize => (Role::Operator, 0),
            Action::Reload => (Role::Admin, 0),
        }
    }

    /// The rule in words, for a denial only (the allowed path allocates
    /// nothing).
    fn rule(&self) -> String {
        match self {
            Action::Connect => "connecting needs a known principal".into(),
            Action::ReadModel { model, layer } => {
                format!("reading model {model:?} in layer {layer} needs viewer and clearance {layer}")
            }
            Action::Infer { model, layer } => {
                format!("inference on {model:?} in layer {layer} needs client and clearance {layer}")
            }
            Action::View => "viewing needs viewer".into(),
            Action::ViewIn { what, layer } => {
                format!("viewing {what} in layer {layer} needs viewer and clearance {layer}")
            }
            Action::Deploy {
                model,
                layer: Some(layer),
            } => format!("deploying {model:?} into layer {layer} needs operator and clearance {layer}"),
            Action::Deploy { model, layer: None } => format!(
                "deploying {model:?} without a layer or device (placement may pick any layer) needs operator and \
                     clearance {MAX_CLEARANCE}; name --layer or --device"
            ),
            Action::Undeploy { model, layer } => {
                format!("undeploying {model:?} from layer {layer} needs operator and clearance {layer}")
            }
            Action::Rollback { target, layer } => {
                format!("rolling back {target} in layer {layer} needs operator and clearance {layer}")
            }
            Action::Feedback { model, layer } => {
                format!("reporting outcomes of {model:?} in layer {layer} needs operator and clearance {layer}")
            }
            Action::Quantize => "quantizing needs operator".into(),
            Action::Reload => "reloading the configuration needs admin".into(),
        }
    }

    fn is_inference(&self) -> bool {
        matches!(self, Action::Connect | Action::ReadModel { .. } | Action::Infer { .. })
    }

    /// The layer the action touches, if one.
    pub fn layer(&self) -> Option<u8> {
        match self {
            Action::ReadModel { layer, .. }
            | Action::Infer { layer, .. }
            | Action::ViewIn { layer, .. }
            | Action::Undeploy { layer, .. }
            | Action::Rollback { layer, .. }
            | Action::Feedback { layer, .. } => Some(*layer),
            Action::Deploy { layer, .. } => *layer,
            Action::Connect | Action::View | Action::Quantize | Action::Reload => None,
        }
    }
}

/// Why a call was refused; `serve::status` picks the code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// No principal: an unknown uid, or TCP where no anonymous principal is
    /// configured (or the Control API over TCP).
    #[error("{caller} is not a known principal: {rule}")]
    Unauthenticated { caller: String, rule: String },
    /// A known principal without the role or clearance.
    #[error("principal {principal:?} ({role}, clearance {clearance}) is not allowed: {rule}")]
    Forbidden {
        principal: String,
        role: Role,
        clearance: u8,
        rule: String,
    },
}

/// A principal already has as much in flight as it may
/// (`access.max_concurrent_*`); `serve::status` makes it RESOURCE_EXHAUSTED.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("principal {principal:?} already has {limit} {what} in flight (access.{key}); retry when one has finished")]
pub struct Saturated {
    pub principal: String,
    pub what: &'static str,
    pub limit: u32,
    pub key: &'static str,
}

/// The one decision: may `caller` do `action`?
pub fn authorise(caller: &Caller, action: &Action) -> Result<(), Denial> {
    let (role, layer) = action.needs();
    let principal = match &caller.principal {
        Some(p) if p.inference_only && !action.is_inference() => {
            return Err(Denial::Unauthenticated {
                caller: caller.to_string(),
                rule: format!(
                    "{}; the Control API is served only to identified principals: the Unix socket, or TCP with a \
                     client certificate (mutual TLS, listeners.tls_client_ca)",
                    action.rule()
                ),
            });
        }
        Some(p) => p,
        None => {
            return Err(Denial::Unauthenticated {
                caller: caller.to_string(),
                rule: action.rule(),
            });
        }
    };
    if principal.role < role || principal.clearance < layer {
        return Err(Denial::Forbidden {
            principal: principal.name.to_string(),
            role: principal.role,
            clearance: principal.clearance,
            rule: action.rule(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
