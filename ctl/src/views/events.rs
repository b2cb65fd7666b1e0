//! `dsmilctl events`: the audit log, filtered by model, kind and time,
//! newest first; or (`--after`) forward from a sequence number, the way a
//! script pages and waits; or (`--follow`) as it grows, from now. BY names
//! who caused each event: the principal, then uid/pid (Unix socket) or the
//! TCP peer; empty for the daemon's own.
//!
//! With --json the list is `{"events": [...]}`; --follow prints each event
//! as one compact JSON object a line, shaped as the list's elements.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dsmil_proto::control as pb;

use crate::client::Clients;
use crate::output;
use crate::table::time_ms;

pub struct Query {
    pub model: String,
    /// A cursor: the events after it, oldest first.
    pub after: Option<u64>,
    pub limit: u32,
    /// 0: any time.
    pub since_unix_ms: u64,
    pub kind: String,
    pub wait_ms: u32,
}

/// `--since`: a duration ago ("10m", "2h 30m") or an RFC 3339 time
/// ("2026-12-04T13:00:00Z", "2026-12-04T14:00:00+01:00"), as ms since the
/// epoch.
pub fn parse_since(text: &str) -> Result<u64, String> {
    let at = match humantime::parse_duration(text) {
        Ok(ago) => SystemTime::now()
            .checked_sub(ago)
            .ok_or_else(|| format!("{text} ago is before the epoch"))?,
        Err(_) => rfc3339(text).ok_or_else(|| {
            format!("{text:?} is neither a duration (10m, 2h, 1d) nor an RFC 3339 time (2026-12-04T13:00:00Z)")
        })?,
    };
    let ms = at
        .duration_since(UNIX_EPOCH)
        .map_err(|_| format!("{text} is before 1970"))?;
    Ok(u64::try_from(ms.as_millis()).unwrap_or(u64::MAX))
}

/// An RFC 3339 time with "Z" or a numeric offset (humantime reads only
/// UTC; the offset is applied here).
fn rfc3339(text: &str) -> Option<SystemTime> {
    if let Ok(t) = humantime::parse_rfc3339(text) {
        return Some(t);
    }
    // "...+HH:MM" or "...-HH:MM": the local time, then back to UTC.
    let (local, offset) = text.split_at_checked(text.len().checked_sub(6)?)?;
    let sign = match offset.as_bytes().first()? {
        b'+' => 1i64,
        b'-' => -1,
        _ => return None,
    };
    let (hours, minutes) = offset[1..].split_once(':')?;
    let (hours, minutes): (u64, u64) = (hours.parse().ok()?, minutes.parse().ok()?);
    if hours > 23 || minutes > 59 || !local.contains('T') {
        return None;
    }
    let local = humantime::parse_rfc3339(&format!("{local}Z")).ok()?;
    let shift = Duration::from_secs(hours * 3600 + minutes * 60);
    // Local = UTC + offset, so UTC = local - offset.
    if sign > 0 {
        local.checked_sub(shift)
    } else {
        local.checked_add(shift)
    }
}

pub async fn run(c: &mut Clients, q: Query, follow: bool, json: bool) -> anyhow::Result<()> {
    if follow {
        return self::follow(c, q, json).await;
    }
    // A cursor reads forward; otherwise the newest come first.
    let r = match q.after {
        Some(after) => fetch(c, &q, after, false, q.limit, q.wait_ms).await?,
        None => fetch(c, &q, 0, true, q.limit, q.wait_ms).await?,
    };
    output::print(&r, json, || {
        if !r.events.is_empty() {
            header();
        }
        r.events.iter().for_each(row);
    })
}

/// Prints events as they are recorded, oldest first: from now, or after
/// the history asked for (after the cursor, since the time, or the newest
/// `limit`).
async fn follow(c: &mut Clients, q: Query, json: bool) -> anyhow::Result<()> {
    let mut header_due = !json;
    let mut print = |e: &pb::Event| -> anyhow::Result<()> {
        if json {
            println!("{}", serde_json::to_string(e)?);
            return Ok(());
        }
        if std::mem::take(&mut header_due) {
            header();
        }
        row(e);
        Ok(())
    };
    let mut after = match q.after {
        Some(after) => after,
        None if q.since_unix_ms > 0 => 0,
        None => {
            // Now is the newest matching event: only later ones can be new.
            let newest = fetch(c, &q, 0, true, q.limit.max(1), 0).await?.events;
            let now = newest.first().map_or(0, |e| e.seq);
            for e in newest.iter().take(q.limit as usize).rev() {
                print(e)?;
            }
            now
        }
    };
    loop {
        let r = fetch(c, &q, after, false, 0, 60_000).await?;
        if let Some(last) = r.events.last() {
            after = last.seq;
        }
        for e in &r.events {
            print(e)?;
        }
    }
}

async fn fetch(
    c: &mut Clients,
    q: &Query,
    after: u64,
    newest_first: bool,
    limit: u32,
    wait_ms: u32,
) -> anyhow::Result<pb::EventsResponse> {
    let request = pb::EventsRequest {
        after,
        model: q.model.clone(),
        limit,
        wait_ms,
        kind: q.kind.clone(),
        newest_first,
        since_unix_ms: q.since_unix_ms,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reads_durations_and_rfc3339_times() {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let ten_min = parse_since("10m").unwrap();
        assert!((now - 600_000).abs_diff(ten_min) < 5_000, "{ten_min} vs {now}");
        assert_eq!(parse_since("1970-01-01T00:00:01Z").unwrap(), 1_000);
        assert_eq!(parse_since("1970-01-01T02:00:01+02:00").unwrap(), 1_000);
        assert_eq!(parse_since("1970-01-01T00:00:01.5-00:30").unwrap(), 1_801_500);
        let err = parse_since("yesterday").unwrap_err();
        assert!(err.contains("RFC 3339"), "{err}");
    }
}
