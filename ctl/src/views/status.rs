//! `dsmilctl status`: the daemon's readiness, uptime, memory, listeners,
//! runtimes and OpenVINO devices, and its warnings.

use dsmil_proto::control as pb;

use crate::client::Clients;
use crate::output;
use crate::table::bytes;

pub async fn run(c: &mut Clients, json: bool) -> anyhow::Result<()> {
    let s = c.control.status(pb::StatusRequest {}).await?.into_inner();
    output::print(&s, json, || lines(&s))
}

fn lines(s: &pb::StatusResponse) {
    println!(
        "dsmild {}: {}, up {} s",
        s.version,
        if s.ready { "ready" } else { "NOT READY" },
        s.uptime_seconds
    );
    println!("deployments serving: {}", s.active_deployments);
    println!("memory (RSS): {}", bytes(s.rss_bytes));
    println!("unix socket: {}", s.unix_socket);
    println!(
        "gRPC TCP: {}",
        if s.tcp_address.is_empty() {
            "off"
        } else {
            &s.tcp_address
        }
    );
    println!(
        "metrics: {}",
        if s.metrics_address.is_empty() {
            "off".to_owned()
        } else {
            format!("http://{}/metrics", s.metrics_address)
        }
    );
    println!("state: {}", s.state_dir);
    for r in &s.runtimes {
        println!(
            "runtime {}: {} ({})",
            r.name,
            if r.available { "available" } else { "UNAVAILABLE" },
            r.detail
        );
    }
    for d in &s.openvino_devices {
        println!("openvino device {}: {}", d.name, d.full_name);
        let mut properties: Vec<_> = d.properties.iter().collect();
        properties.sort();
        for (key, value) in properties {
            println!("    {key}: {value}");
        }
    }
    for w in &s.warnings {
        println!("warning: {w}");
    }
    for section in &s.pending_restart {
        println!("pending restart: [{section}] changed by a reload; it takes effect when dsmild restarts");
    }
}
