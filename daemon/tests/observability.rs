//! /metrics by value and by promtool; dsmilctl's views and infer.

mod common;

use std::io::Write;
use std::process::Command;

use common::*;
use dsmil_proto::inference as pb;
use dsmil_proto::inference::model_infer_request::InferInputTensor;

/// The value of the sample whose line starts with `prefix` (name and labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_by_code_and_pass_promtool() {
    let daemon = Daemon::start();
    daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    let mut client = daemon.inference().await;
    let request = |rows: i64, values: usize| pb::ModelInferRequest {
        model_name: "digits".into(),
        inputs: vec![InferInputTensor {
            name: "pixels".into(),
            datatype: "FP32".into(),
            shape: vec![rows, 64],
            ..Default::default()
        }],
        raw_input_contents: vec![f32_bytes(&vec![2.0; values]).into()],
        ..Default::default()
    };
    for _ in 0..7 {
        client.model_infer(request(1, 64)).await.unwrap();
    }
    for _ in 0..2 {
        client.model_infer(request(1, 10)).await.unwrap_err();
    }

    let status = daemon.ctl_json(&["status"]);
    let text = scrape(status["metrics_address"].as_str().unwrap());
    let labels = r#"model="digits",version="1",device="47",layer="7",backend="onnxruntime""#;
    assert_eq!(
        sample(
            &text,
            &format!(r#"dsmil_inference_requests_total{{{labels},code="OK"}}"#)
        ),
        Some(7.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!(r#"dsmil_inference_requests_total{{{labels},code="INVALID_ARGUMENT"}}"#)
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!("dsmil_inference_request_duration_seconds_count{{{labels}}}")
        ),
        Some(9.0)
    );
    assert_eq!(sample(&text, "dsmil_models_loaded"), Some(1.0));
    for stage in ["queue", "compute"] {
        assert_eq!(
            sample(
                &text,
                &format!("dsmil_inference_{stage}_duration_seconds_count{{{labels}}}")
            ),
            Some(7.0),
            "{stage}: the successful requests"
        );
    }
    assert_eq!(
        sample(&text, &format!("dsmil_inference_in_flight_requests{{{labels}}}")),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, r#"dsmil_layer_memory_budget_bytes{layer="7"}"#),
        Some(40.0 * (1u64 << 30) as f64)
    );
    assert!(sample(&text, "dsmil_host_memory_total_bytes").unwrap() > 1e9, "{text}");
    assert!(sample(&text, "dsmil_process_resident_memory_bytes").unwrap() > 1e6);
    assert_eq!(sample(&text, r#"dsmil_deploys_total{model="digits"}"#), Some(1.0));

    // Every metric the shipped Grafana dashboard queries is exported, and
    // every query is filtered by the job and instance variables.
    let queried = dashboard_metrics();
    assert!(queried.len() >= 20, "{queried:?}");
    let missing: Vec<&String> = queried
        .iter()
        .filter(|m| !text.contains(&format!("# TYPE {m} ")))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics dsmild does not export: {missing:?}"
    );
    assert!(
        text.contains("# TYPE dsmil_inference_request_duration_seconds histogram"),
        "{text}"
    );

    promtool_check_metrics(&text);
}

/// `promtool check metrics` (Debian package `prometheus`; scripts/test.sh
/// installs it) on a scrape: the format and the naming lints.
fn promtool_check_metrics(text: &str) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is needed for this test: apt-get install prometheus (scripts/test.sh does)");
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn dashboard() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/grafana/dsmil-dashboard.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Each metric an expression selects, with its label selector (empty when
/// it has none): `rate(x_total{a="b"}[5m])` gives `("x_total", "a=\"b\"")`.
/// Only dsmild's own families and the standard process family count.
fn selected_metrics(expr: &str) -> Vec<(String, String)> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find(|c: char| ident(c)) {
        let word_len = rest[start..].find(|c: char| !ident(c)).unwrap_or(rest.len() - start);
        let word = &rest[start..start + word_len];
        let after = &rest[start + word_len..];
        rest = after;
        if !(word.starts_with("dsmil_") || word.starts_with("process_")) {
            continue;
        }
        let selector = after
            .strip_prefix('{')
            .and_then(|s| s.split_once('}'))
            .map_or(String::new(), |(inside, _)| inside.to_owned());
        found.push((word.to_owned(), selector));
    }
    found
}

/// The metric families the dashboard queries, after checking what every
/// dashboard must: a data source variable every panel uses, `job` and
/// `instance` variables, each selection filtered by both (two hosts never
/// merge) and the drift score shown as the unitless number it is.
fn dashboard_metrics() -> std::collections::BTreeSet<String> {
    let dashboard = dashboard();
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    for needed in ["datasource", "job", "instance"] {
        assert!(variables.contains(&needed), "no ${needed} variable: {variables:?}");
    }
    let mut queries: Vec<String> = Vec::new();
    let mut problems = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        if panel["datasource"]["uid"] != "${datasource}" {
            problems.push(format!("{title}: not on the $datasource variable"));
        }
        for target in panel["targets"].as_array().unwrap() {
            queries.push(target["expr"].as_str().unwrap().to_owned());
        }
        if title.starts_with("Drift") {
            let unit = panel["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or("");
            assert!(!unit.contains("percent"), "PSI is unitless, not {unit}");
            let steps: Vec<f64> = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|s| s["value"].as_f64())
                .collect();
            assert_eq!(steps, [0.1, 0.25], "PSI's conventional thresholds");
        }
    }
    let mut queried = std::collections::BTreeSet::new();
    for expr in &queries {
        let selected = selected_metrics(expr);
        assert!(!selected.is_empty(), "a query of no dsmild metric: {expr}");
        for (metric, selector) in selected {
            for filter in [r#"job=~"$job""#, r#"instance=~"$instance""#] {
                if !selector.split(',').any(|m| m.trim() == filter) {
                    problems.push(format!("{metric} without {filter} in {expr}"));
                }
            }
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| metric.strip_suffix(suffix))
                .unwrap_or(&metric);
            queried.insert(family.to_owned());
        }
    }
    // The variables' own queries name metrics too.
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"].as_str() {
            queried.extend(selected_metrics(query).into_iter().map(|(m, _)| m));
        }
    }
    assert!(problems.is_empty(), "the dashboard: {problems:#?}");
    queried
}

#[test]
fn the_dashboard_selector_check_reads_promql() {
    assert_eq!(
        selected_metrics(r#"sum by (instance, model) (rate(dsmil_x_total{job=~"$job",code="OK"}[5m])) / process_y"#),
        [
            ("dsmil_x_total".to_owned(), r#"job=~"$job",code="OK""#.to_owned()),
            ("process_y".to_owned(), String::new())
        ]
    );
}

/// The value of `name`'s only sample (a family without labels).
fn single(text: &str, name: &str) -> f64 {
    sample(text, &format!("{name} ")).unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread")]
async fn process_build_and_inference_counts_follow_convention_and_layer_memory_survives_a_restart() {
    let daemon = Daemon::start();
    let address = daemon.ctl_json(&["status"])["metrics_address"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = scrape(&address);

    // The standard process family, read at the scrape.
    let cpu_before = single(&before, "process_cpu_seconds_total");
    assert!(before.contains("# TYPE process_cpu_seconds_total counter"), "{before}");
    assert!(single(&before, "process_resident_memory_bytes") > 1e6);
    assert!(single(&before, "process_virtual_memory_bytes") >= single(&before, "process_resident_memory_bytes"));
    let (open, max) = (single(&before, "process_open_fds"), single(&before, "process_max_fds"));
    assert!(open >= 3.0 && max >= open, "{open} of {max}");
    let started = single(&before, "process_start_time_seconds");
    assert!((unix_now() - started).abs() < 120.0, "started at {started}");
    let build = format!(
        r#"dsmil_build_info{{version="{}",git_commit=""#,
        env!("CARGO_PKG_VERSION")
    );
    let info = before.lines().find(|l| l.starts_with(&build));
    assert!(info.is_some_and(|l| l.ends_with("} 1")), "{before}");

    // Three rows in one request: three inferences, one execution.
    let deployed = daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    let mut client = daemon.inference().await;
    client.model_infer(digits_request(3, 0.5)).await.unwrap();
    let after = scrape(&address);
    let labels = r#"model="digits",version="1",device="47",layer="7",backend="onnxruntime""#;
    let count = |text: &str, name: &str| sample(text, &format!("{name}{{{labels}}}"));
    assert_eq!(count(&after, "dsmil_inference_count_total"), Some(3.0), "{after}");
    assert_eq!(count(&after, "dsmil_inference_exec_count_total"), Some(1.0));
    client.model_infer(digits_request(2, 0.5)).await.unwrap();
    client.model_infer(digits_request(1, 0.5)).await.unwrap();
    let later = scrape(&address);
    assert_eq!(count(&later, "dsmil_inference_count_total"), Some(6.0));
    assert_eq!(count(&later, "dsmil_inference_exec_count_total"), Some(3.0));
    // Triton's ModelStatistics says the same.
    let stats = client
        .model_statistics(pb::ModelStatisticsRequest {
            name: "digits".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let s = &stats.model_stats[0];
    assert_eq!((s.inference_count, s.execution_count), (6, 3));
    // A deploy's checks and warmup run the model, but are no application's
    // executions; they do take CPU, which the counter shows at once.
    let cpu_after = single(&after, "process_cpu_seconds_total");
    assert!(cpu_after > cpu_before, "{cpu_before} then {cpu_after}");
    assert!(single(&later, "process_cpu_seconds_total") >= cpu_after);
    promtool_check_metrics(&later);

    // After a restart the first scrape already shows the restored
    // deployment's memory (the sampler's first tick ran before the restore).
    let dir = daemon.stop();
    let daemon = Daemon::start_in(dir, &[]);
    let address = daemon.ctl_json(&["status"])["metrics_address"]
        .as_str()
        .unwrap()
        .to_owned();
    let first = scrape(&address);
    let layer = |name: &str| sample(&first, &format!(r#"{name}{{layer="7"}}"#));
    assert_eq!(
        layer("dsmil_layer_memory_estimated_bytes"),
        deployed["estimated_bytes"].as_f64(),
        "{first}"
    );
    assert!(deployed["estimated_bytes"].as_u64().unwrap() > 0);
    let shown = daemon.ctl_json(&["show", &deployed["id"].to_string()]);
    assert_eq!(
        layer("dsmil_layer_memory_measured_bytes"),
        shown["measured_bytes"].as_f64()
    );
    assert!(layer("dsmil_layer_memory_measured_bytes").unwrap() > 0.0);
    // The restored deployment's counters start again, at zero.
    assert_eq!(count(&first, "dsmil_inference_count_total"), Some(0.0));
    assert_eq!(count(&first, "dsmil_inference_exec_count_total"), Some(0.0));
}

#[test]
fn dsmilctl_shows_devices_layers_status_and_infers() {
    let daemon = Daemon::start();
    let deployed = daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    assert_eq!(
        deployed["effective_target"], "cpu",
        "no GPU here: the configured fallback applies"
    );
    assert_eq!(deployed["target"], "gpu");

    let devices = daemon.ctl_json(&["devices"]);
    let devices = devices["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 104);
    assert_eq!(devices[47]["role"], "primary_ai");
    assert_eq!(devices[47]["model"], "digits");
    assert_eq!(devices[47]["state"], "Active");
    assert_eq!(devices[70]["reserved"], true);
    assert_eq!(
        devices
            .iter()
            .filter(|d| d.get("model").is_some_and(|m| m != ""))
            .count(),
        1
    );

    let layers = daemon.ctl_json(&["layers"]);
    let l7 = &layers["layers"][6];
    assert_eq!((l7["id"].as_u64(), l7["budget_gb"].as_f64()), (Some(7), Some(40.0)));
    assert_eq!(l7["active_deployments"], 1);
    assert_eq!(
        l7["estimated_bytes"], deployed["estimated_bytes"],
        "the layer charges the deployment's estimate"
    );
    let shown = daemon.ctl_json(&["show", &deployed["id"].to_string()]);
    assert!(shown["measured_bytes"].as_u64().unwrap() > 0, "{shown}");
    assert_eq!(l7["measured_bytes"], shown["measured_bytes"]);
    assert_eq!(devices[47]["measured_bytes"], shown["measured_bytes"]);

    let status = daemon.ctl_json(&["status"]);
    assert_eq!(status["ready"], true);
    assert_eq!(status["active_deployments"], 1);
    assert!(status["rss_bytes"].as_u64().unwrap() > 1 << 20);
    assert!(
        status["warnings"][0].as_str().unwrap().contains("wants gpu"),
        "{status}"
    );

    let random = daemon.ctl_json(&["infer", "digits", "--random", "--batch", "3"]);
    assert_eq!(random["outputs"][0]["shape"], serde_json::json!([3, 10]));
    let probabilities: Vec<f64> = random["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for row in probabilities.chunks(10) {
        assert!(
            (row.iter().sum::<f64>() - 1.0).abs() < 1e-4,
            "softmax rows sum to 1: {row:?}"
        );
    }

    // An .npz keyed by input name (the test set's extra keys are ignored).
    let from_file = daemon.ctl_json(&["infer", "digits", "--input", SAMPLE_TEST_SET]);
    let (_, labels) = test_set();
    let predicted: Vec<i64> = from_file["outputs"][1]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(predicted.len(), labels.len());
    let correct = predicted.iter().zip(labels.iter()).filter(|(a, b)| a == b).count();
    assert!(correct as f64 / labels.len() as f64 >= 0.95);

    let human = daemon.ctl(&["infer", "digits", "--random"]);
    assert!(human.status.success());
    assert!(String::from_utf8_lossy(&human.stdout).contains("label INT64 [1]"));
    let missing = daemon.ctl(&["infer", "nope", "--random"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("NotFound"));
}

/// An HTTP/1.0 GET (so the answer is never chunked): status line and body.
fn http_get(addr: &str, path: &str) -> Option<(String, String)> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}

fn url_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server (the `prometheus` binary of the Debian package that
/// also brings promtool) scraping `targets` every second as job `dsmild`.
struct Prometheus {
    child: std::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(targets: &[&str]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: dsmild\n    \
                 static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus is needed for this test: apt-get install prometheus (scripts/test.sh does)");
        Prometheus { child, addr, _dir: dir }
    }

    /// An instant query's result vector (or scalar) as JSON.
    fn query(&self, promql: &str) -> serde_json::Value {
        let path = format!("/api/v1/query?query={}", url_encoded(promql));
        let (status, body) = http_get(&self.addr, &path).unwrap_or_else(|| panic!("no answer to {promql}"));
        assert!(status.contains(" 200 "), "{promql}: {status}\n{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["status"], "success", "{promql}: {answer}");
        answer["data"]["result"].clone()
    }

    /// Waits (at most a minute) until `promql` returns something `done`
    /// accepts: Prometheus scrapes on its own clock.
    fn wait_until(&self, promql: &str, done: impl Fn(&serde_json::Value) -> bool) {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let ready = http_get(&self.addr, "/-/ready").is_some_and(|(s, _)| s.contains(" 200 "));
            if ready && done(&self.query(promql)) {
                return;
            }
            assert!(std::time::Instant::now() < until, "{promql} never came true");
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }
}

/// The dashboard's queries, run by a real Prometheus against two real
/// daemons: every query is valid PromQL, every series it returns names its
/// instance (no query merges two hosts), and picking one instance returns
/// only that host's series.
#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_keeps_two_daemons_apart_in_prometheus() {
    let daemons = [Daemon::start(), Daemon::start()];
    let mut addresses = Vec::new();
    for daemon in &daemons {
        daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
        let mut client = daemon.inference().await;
        client.model_infer(digits_request(3, 0.5)).await.unwrap();
        let status = daemon.ctl_json(&["status"]);
        addresses.push(status["metrics_address"].as_str().unwrap().to_owned());
    }
    let targets: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let prometheus = Prometheus::start(&targets);
    // Three scrapes of each, so that rate() over them has two intervals.
    prometheus.wait_until(r#"count_over_time(up{job="dsmild"}[5m]) >= 3"#, |r| {
        r.as_array().is_some_and(|a| a.len() == 2)
    });

    let dashboard = dashboard();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    let with = |expr: &str, instance: &str| {
        expr.replace("$job", "dsmild")
            .replace("$instance", instance)
            .replace("$model", ".*")
    };
    let mut seen = std::collections::BTreeSet::new();
    for expr in &exprs {
        let result = prometheus.query(&with(expr, ".*"));
        for series in result.as_array().unwrap() {
            let instance = series["metric"]["instance"].as_str();
            assert!(instance.is_some(), "{expr} merges instances: {series}");
            seen.extend(instance.map(str::to_owned));
        }
        let one = prometheus.query(&with(expr, &addresses[0]));
        for series in one.as_array().unwrap() {
            assert_eq!(series["metric"]["instance"], addresses[0].as_str(), "{expr}: {series}");
        }
    }
    let both: std::collections::BTreeSet<String> = addresses.iter().cloned().collect();
    assert_eq!(seen, both);
    // The variables find both daemons, and the build-info panel shows each.
    let builds = prometheus.query(&with("dsmil_build_info{job=~\"$job\",instance=~\"$instance\"}", ".*"));
    assert_eq!(builds.as_array().unwrap().len(), 2, "{builds}");
    let rows = prometheus.query(&with(
        "sum by (instance) (rate(dsmil_inference_count_total{job=~\"$job\",instance=~\"$instance\"}[5m]))",
        ".*",
    ));
    assert_eq!(rows.as_array().unwrap().len(), 2, "{rows}");
}
