//! Resolving `[access]` and the TLS files of `[listeners]`: user and group
//! names become ids (group members included, since SO_PEERCRED reports only
//! the caller's primary group), PEM files are read and checked, and every
//! problem is named by its key. The rules themselves are `access`'s.

use super::raw::{RawAccess, RawId, RawListeners};
use crate::access::{Limits, MAX_CLEARANCE, Policy, PrincipalRule, Role};

/// The TCP listener's TLS material, read at load time so that
/// `check-config` and a reload report a missing or malformed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The server's certificate chain and private key (PEM).
    pub certificate_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// The CA(s) whose client certificates identify callers (PEM); None:
    /// TLS without client certificates, so every TCP caller is anonymous.
    pub client_ca_pem: Option<Vec<u8>>,
}

pub(super) fn resolve_tls(raw: &RawListeners, problems: &mut Vec<String>) -> Option<TlsConfig> {
    let set = |v: &str| !v.is_empty();
    let (cert, key, ca) = (&raw.tls_certificate, &raw.tls_key, &raw.tls_client_ca);
    if !set(cert) && !set(key) {
        if set(ca) {
            problems.push(
                "listeners.tls_client_ca is set but listeners.tls_certificate and tls_key are not: client \
                 certificates need a TLS listener"
                    .to_owned(),
            );
        }
        return None;
    }
    if set(cert) != set(key) {
        problems.push("listeners.tls_certificate and listeners.tls_key go together: set both or neither".to_owned());
        return None;
    }
    let mut read = |key: &str, path: &str, marker: &str| -> Option<Vec<u8>> {
        match std::fs::read(path) {
            Ok(bytes) if contains(&bytes, marker) => Some(bytes),
            Ok(_) => {
                problems.push(format!("{key} = {path:?} holds no PEM block with \"{marker}\""));
                None
            }
            Err(e) => {
                problems.push(format!("{key} = {path:?}: {e}"));
                None
            }
        }
    };
    let certificate_pem = read("listeners.tls_certificate", cert, "CERTIFICATE-----");
    let key_pem = read("listeners.tls_key", key, "PRIVATE KEY-----");
    let client_ca_pem = set(ca)
        .then(|| read("listeners.tls_client_ca", ca, "CERTIFICATE-----"))
        .flatten();
    if set(ca) && client_ca_pem.is_none() {
        return None;
    }
    Some(TlsConfig {
        certificate_pem: certificate_pem?,
        key_pem: key_pem?,
        client_ca_pem,
    })
}

fn contains(bytes: &[u8], marker: &str) -> bool {
    bytes.windows(marker.len()).any(|w| w == marker.as_bytes())
}

pub(super) fn resolve_access(raw: &RawAccess, problems: &mut Vec<String>) -> Policy {
    let clearance_ok = |c: u8| (1..=MAX_CLEARANCE).contains(&c);
    let tcp = raw.tcp_anonymous_clearance;
    if tcp > MAX_CLEARANCE {
        problems.push(format!(
            "access.tcp_anonymous_clearance = {tcp}: expected 0 (refuse TCP callers) or a clearance 1-{MAX_CLEARANCE}"
        ));
    }
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let mut principals = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, p) in raw.principals.iter().enumerate() {
        let key = format!("access.principals[{i}] ({:?})", p.name);
        if p.name.is_empty() || p.name == "anonymous" || p.name == "unknown" {
            problems.push(format!("{key}: name must be set, and not \"anonymous\" or \"unknown\""));
        } else if !names.insert(p.name.clone()) {
            problems.push(format!("{key}: the name is used twice"));
        }
        let role = p.role.parse::<Role>().unwrap_or_else(|e| {
            problems.push(format!("{key}: role: {e}"));
            Role::Viewer
        });
        if !clearance_ok(p.clearance) {
            problems.push(format!(
                "{key}: clearance = {}: expected 1-{MAX_CLEARANCE}",
                p.clearance
            ));
        }
        if p.users.is_empty() && p.groups.is_empty() && p.certificate_names.is_empty() {
            problems.push(format!(
                "{key}: names no users, groups or certificate_names, so it covers nobody"
            ));
        }
        if p.certificate_names.iter().any(String::is_empty) {
            problems.push(format!("{key}: certificate_names has an empty name"));
        }
        let mut ids = |list: &[RawId], what: &str, table: &str| -> Vec<u32> {
            list.iter()
                .filter_map(|id| match id {
                    RawId::Id(n) => Some(*n),
                    RawId::Name(name) => lookup_id(table, name).or_else(|| {
                        problems.push(format!("{key}: {what} {name:?} does not exist (in {table})"));
                        None
                    }),
                })
                .collect()
        };
        let uids = ids(&p.users, "user", "/etc/passwd");
        let gids = ids(&p.groups, "group", "/etc/group");
        let member_uids = gids
            .iter()
            .flat_map(|gid| members(&groups, *gid))
            .filter_map(|user| lookup_id("/etc/passwd", user))
            .collect();
        let limits = (p.max_concurrent_inferences.is_some() || p.max_concurrent_deploys.is_some()).then(|| Limits {
            inferences: p.max_concurrent_inferences.unwrap_or(raw.max_concurrent_inferences),
            deploys: p.max_concurrent_deploys.unwrap_or(raw.max_concurrent_deploys),
        });
        principals.push(PrincipalRule {
            name: p.name.as_str().into(),
            role,
            clearance: p.clearance,
            uids,
            gids,
            member_uids,
            certificate_names: p.certificate_names.clone(),
            limits,
        });
    }
    let socket_group = match &raw.socket_group {
        RawId::Id(n) => n.to_string(),
        RawId::Name(name) if name.is_empty() => {
            problems.push("access.socket_group must be set (a group name or gid)".to_owned());
            String::new()
        }
        RawId::Name(name) => name.clone(),
    };
    Policy {
        socket_group,
        principals,
        tcp_anonymous_clearance: (tcp > 0).then_some(tcp),
        limits: Limits {
            inferences: raw.max_concurrent_inferences,
            deploys: raw.max_concurrent_deploys,
        },
        daemon_uid: daemon_uid(),
    }
}

/// The user names `/etc/group` lists as members of `gid`.
fn members(groups: &str, gid: u32) -> Vec<&str> {
    groups
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() == 4 && fields[2].parse() == Ok(gid)).then(|| fields[3])
        })
        .map(|list| list.split(',').filter(|u| !u.is_empty()).collect())
        .unwrap_or_default()
}

/// The effective uid of this process (the owner of /proc/self).
fn daemon_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map_or(0, |m| m.uid())
}

/// A user's uid (`/etc/passwd`) or a group's gid (`/etc/group`) by name,
/// from the files themselves: NSS sources (LDAP, sssd) are not consulted,
/// so such users and groups are named by their numeric ids.
pub fn lookup_id(table: &str, name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(table).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then_some(())?;
        fields.nth(1)?.parse().ok()
    })
}

/// A group given as a name or a numeric gid, if it exists.
pub fn group_id(group: &str) -> Option<u32> {
    match group.parse::<u32>() {
        Ok(gid) => Some(gid),
        Err(_) => lookup_id("/etc/group", group),
    }
}

#[cfg(test)]
mod tests {
    use crate::access::Role;

    fn load(access: &str) -> Result<super::super::Config, super::super::ConfigError> {
        let mut doc: toml::Table = super::super::DEFAULT_TOML.parse().unwrap();
        doc.insert("access".into(), toml::Value::Table(access.parse().unwrap()));
        super::super::resolve::resolve(doc, "test")
    }

    #[test]
    fn principals_resolve_names_and_ids_and_every_problem_is_named() {
        let config = load(
            r#"socket_group = "root"
               tcp_anonymous_clearance = 0
               max_concurrent_inferences = 8
               max_concurrent_deploys = 1
               principals = [
                 { name = "ops", users = ["root", 1001], groups = [7], role = "operator", clearance = 7 },
                 { name = "edge", certificate_names = ["edge.example"], role = "client", clearance = 3,
                   max_concurrent_inferences = 2 },
               ]"#,
        )
        .unwrap();
        let p = &config.access.principals[0];
        assert_eq!(
            (p.role, p.clearance, &p.uids, &p.gids, p.limits),
            (Role::Operator, 7, &vec![0, 1001], &vec![7], None)
        );
        let edge = &config.access.principals[1];
        assert_eq!(edge.certificate_names, ["edge.example"]);
        assert_eq!(
            edge.limits,
            Some(crate::access::Limits {
                inferences: 2,
                deploys: 1
            })
        );
        assert_eq!(config.access.limits.inferences, 8);
        assert_eq!(config.access.tcp_anonymous_clearance, None);

        let err = load(
            r#"socket_group = ""
               tcp_anonymous_clearance = 10
               max_concurrent_inferences = 8
               max_concurrent_deploys = 1
               principals = [
                 { name = "a", users = ["no-such-user-here"], role = "boss", clearance = 0 },
                 { name = "a", role = "viewer", clearance = 3 },
               ]"#,
        )
        .unwrap_err()
        .to_string();
        for expected in [
            "access.tcp_anonymous_clearance = 10",
            "user \"no-such-user-here\" does not exist",
            "\"boss\" is not a role",
            "clearance = 0: expected 1-9",
            "the name is used twice",
            "covers nobody",
            "access.socket_group must be set",
        ] {
            assert!(err.contains(expected), "{expected:?} missing from: {err}");
        }
    }

    #[test]
    fn group_members_are_read_from_the_group_database() {
        let groups = "root:x:0:\nops:x:1500:alice,bob\nempty:x:1600:\n";
        assert_eq!(super::members(groups, 1500), ["alice", "bob"]);
        assert!(super::members(groups, 1600).is_empty());
        assert!(super::members(groups, 42).is_empty());
    }

    #[test]
    fn tls_files_are_read_and_checked_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.to_str().unwrap().to_owned()
        };
        let cert = file(
            "cert.pem",
            "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        );
        let key = file(
            "key.pem",
            "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n",
        );
        let junk = file("junk.pem", "hello");
        let raw = |c: &str, k: &str, ca: &str| super::RawListeners {
            unix_socket: "/run/x.sock".into(),
            tcp: "127.0.0.1:1".into(),
            metrics: String::new(),
            http: String::new(),
            tls_certificate: c.into(),
            tls_key: k.into(),
            tls_client_ca: ca.into(),
        };
        let mut problems = Vec::new();
        let tls = super::resolve_tls(&raw(&cert, &key, &cert), &mut problems).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert!(tls.client_ca_pem.is_some());
        assert_eq!(super::resolve_tls(&raw("", "", ""), &mut problems), None);
        assert!(problems.is_empty());

        for (c, k, ca, expected) in [
            (cert.as_str(), "", "", "go together"),
            ("", "", cert.as_str(), "need a TLS listener"),
            (
                cert.as_str(),
                junk.as_str(),
                "",
                "holds no PEM block with \"PRIVATE KEY-----\"",
            ),
            (
                cert.as_str(),
                key.as_str(),
                "/no/such/ca.pem",
                "listeners.tls_client_ca = \"/no/such/ca.pem\"",
            ),
        ] {
            let mut problems = Vec::new();
            assert_eq!(super::resolve_tls(&raw(c, k, ca), &mut problems), None);
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{expected:?} missing from {problems:?}"
            );
        }
    }

    #[test]
    fn the_shipped_defaults_map_nobody_and_serve_no_tcp() {
        let config = super::super::load(None, &[]).unwrap();
        assert!(config.access.principals.is_empty());
        assert_eq!(config.access.socket_group, "dsmil");
        assert_eq!(config.access.tcp_anonymous_clearance, None);
        assert_eq!(config.listeners.tcp, None);
        assert_eq!(config.listeners.tls, None);
        assert!(config.access.limits.inferences > 0 && config.access.limits.deploys > 0);
    }
}
