//! `dsmilctl top`: live p50/p95/p99, throughput, outcomes and memory per
//! deployment, redrawn every few seconds until interrupted. Only a
//! terminal gets the clear-screen codes; into a pipe or file each sample
//! follows the last after a blank line.

use std::io::IsTerminal;

use dsmil_proto::control as pb;

use crate::client::Clients;
use crate::output;
use crate::table::{Table, bytes};

pub async fn run(c: &mut Clients, every: u64, once: bool, json: bool) -> anyhow::Result<()> {
    // A stream of JSON documents would be hard to parse: --json is one sample.
    let once = once || json;
    let terminal = std::io::stdout().is_terminal();
    let mut first = true;
    loop {
        let r = c.control.top(pb::TopRequest {}).await?.into_inner();
        if !once && terminal {
            // Clear the screen and go home, as top(1) does.
            print!("\x1b[2J\x1b[H");
        } else if !std::mem::take(&mut first) {
            println!();
        }
        output::print(&r, json, || table(&r))?;
        if once {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(every.max(1))).await;
    }
}

fn table(r: &pb::TopResponse) {
    println!(
        "dsmild: RSS {}; latency and rate over the last {} s",
        bytes(r.rss_bytes),
        r.span_seconds
    );
    let mut t = Table::new(&[
        "MODEL", "VER", "DEVICE", "LAYER", "BACKEND", "P50", "P95", "P99", "REQ/S", "OK", "FAILED", "MEMORY", "ALERT",
    ]);
    for d in &r.deployments {
        t.row(vec![
            d.model.clone(),
            d.version.to_string(),
            d.device.to_string(),
            d.layer.to_string(),
            d.backend.clone(),
            format!("{:.3} ms", d.p50_ms),
            format!("{:.3} ms", d.p95_ms),
            format!("{:.3} ms", d.p99_ms),
            format!("{:.1}", d.requests_per_second),
            d.successes.to_string(),
            d.failures.to_string(),
            bytes(if d.measured_bytes > 0 {
                d.measured_bytes
            } else {
                d.estimated_bytes
            }),
            if d.latency_alert { "p99".into() } else { String::new() },
        ]);
    }
    t.print();
}
