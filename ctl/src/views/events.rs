//! `dsmilctl events`: the audit log, filtered by model and kind, once or
//! (`--follow`) as it grows. BY names who caused each event: the principal,
//! then uid/pid (Unix socket) or the TCP peer; empty for the daemon's own.

use dsmil_proto::control as pb;

use crate::client::Clients;
use crate::output;
use crate::table::time_ms;

pub struct Query {
    pub model: String,
    pub after: u64,
    pub limit: u32,
    pub kind: String,
    pub wait_ms: u32,
}

pub async fn run(c: &mut Clients, q: Query, follow: bool, json: bool) -> anyhow::Result<()> {
    if !follow {
        let r = fetch(c, &q, q.after, q.wait_ms).await?;
        return output::print(&r, json, || {
            if !r.events.is_empty() {
                header();
            }
            r.events.iter().for_each(row);
        });
    }
    // A stream has no one response to print: each event goes out as it
    // arrives, with --json as one compact object a line.
    let mut after = q.after;
    let mut header_due = !json;
    loop {
        let r = fetch(c, &q, after, 60_000).await?;
        if let Some(last) = r.events.last() {
            after = last.seq;
        }
        for e in &r.events {
            if json {
                println!("{}", serde_json::to_string(e)?);
                continue;
            }
            if header_due {
                header();
                header_due = false;
            }
            row(e);
        }
    }
}

async fn fetch(c: &mut Clients, q: &Query, after: u64, wait_ms: u32) -> anyhow::Result<pb::EventsResponse> {
    let request = pb::EventsRequest {
        after,
        model: q.model.clone(),
        limit: q.limit,
        wait_ms,
        kind: q.kind.clone(),
    };
    Ok(c.control.events(request).await?.into_inner())
}

fn header() {
    println!(
        "{:<5} {:<20} {:<14} {:<12} {:<7} {:<6} {:<28} DETAIL",
        "SEQ", "AT", "KIND", "MODEL", "VERSION", "DEVICE", "BY"
    );
}

fn row(e: &pb::Event) {
    println!(
        "{:<5} {:<20} {:<14} {:<12} {:<7} {:<6} {:<28} {}",
        e.seq,
        time_ms(e.at_unix_ms),
        e.kind,
        e.model,
        if e.version == 0 {
            String::new()
        } else {
            e.version.to_string()
        },
        e.device.map_or(String::new(), |d| d.to_string()),
        by(e),
        e.detail
    );
}

/// "alice (uid 1001 pid 42)", "anonymous (tcp 127.0.0.1:5000)", or "".
fn by(e: &pb::Event) -> String {
    if e.principal.is_empty() && e.transport.is_empty() {
        return String::new();
    }
    let how = match (e.caller_uid, e.caller_pid) {
        (Some(uid), Some(pid)) => format!("uid {uid} pid {pid}"),
        (Some(uid), None) => format!("uid {uid}"),
        _ if !e.peer.is_empty() => format!("{} {}", e.transport, e.peer),
        _ => e.transport.clone(),
    };
    format!("{} ({how})", e.principal)
}
