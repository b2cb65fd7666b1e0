//! Mutual TLS on the TCP listener, on a real dsmild with real dsmilctl: a
//! client certificate the configured CA signed names a principal, which then
//! gets the Control API over TCP within its role and clearance; without a
//! certificate a caller is the anonymous inference client (or refused); a
//! certificate no principal claims is an unknown caller; one from another CA
//! never completes the handshake. Every change and denial names the caller.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{Daemon, SAMPLE_MODEL, ctl_binary};

/// A CA, the server's certificate (localhost and 127.0.0.1) and client
/// certificates, written as PEM files into `dir`.
struct Pki {
    dir: PathBuf,
    /// Owns the files for the daemon's lifetime.
    _temp: Option<tempfile::TempDir>,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let pki = Pki {
            dir: dir.join("pki"),
            _temp: None,
        };
        std::fs::create_dir_all(&pki.dir).unwrap();
        let ca = authority("dsmil test CA");
        pki.write("ca.pem", &ca.pem());
        let other = authority("somebody else's CA");
        pki.leaf("server", &["localhost", "127.0.0.1"], &ca);
        pki.leaf("ops-console", &["ops-console.example"], &ca);
        pki.leaf("viewer-box", &[], &ca);
        pki.leaf("stranger", &[], &ca);
        pki.leaf("forged", &["ops-console.example"], &other);
        pki
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.join(name), text).unwrap();
    }

    fn leaf(&self, name: &str, alt_names: &[&str], ca: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>) {
        let mut params =
            rcgen::CertificateParams::new(alt_names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, ca).unwrap();
        self.write(&format!("{name}.pem"), &cert.pem());
        self.write(&format!("{name}.key"), &key.serialize_pem());
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }
}

fn authority(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
}

/// A daemon whose TCP listener wants client certificates from the test CA;
/// anonymous TCP inference at `anonymous` (0: refused).
fn start(anonymous: &str) -> (Daemon, Pki, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut pki = Pki::new(dir.path());
    let (config_dir, config) = common::config_with(&[
        (
            "tls_certificate = \"\"",
            &format!("tls_certificate = {:?}", pki.path("server.pem")),
        ),
        ("tls_key = \"\"", &format!("tls_key = {:?}", pki.path("server.key"))),
        (
            "tls_client_ca = \"\"",
            &format!("tls_client_ca = {:?}", pki.path("ca.pem")),
        ),
        (
            "principals = []",
            r#"principals = [
  { name = "ops", certificate_names = ["ops-console.example"], role = "operator", clearance = 7 },
  { name = "watch", certificate_names = ["viewer-box"], role = "viewer", clearance = 9 },
]"#,
        ),
    ]);
    pki._temp = Some(dir);
    let daemon = Daemon::start_in(config_dir, &["--config", &config, "--anonymous-clearance", anonymous]);
    let addr = daemon.ctl_json(&["status"])["tcp_address"].as_str().unwrap().to_owned();
    (daemon, pki, addr)
}

/// dsmilctl over TCP with TLS, as `client` (a certificate name) or with no
/// client certificate.
fn ctl_tls(pki: &Pki, addr: &str, client: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(ctl_binary());
    cmd.args(["--addr", &format!("https://localhost:{}", port(addr))])
        .args(["--ca", &pki.path("ca.pem")]);
    if let Some(client) = client {
        cmd.args(["--cert", &pki.path(&format!("{client}.pem"))])
            .args(["--key", &pki.path(&format!("{client}.key"))]);
    }
    cmd.args(args).env_remove("DSMIL_SOCKET").output().unwrap()
}

fn port(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap()
}

fn ok(out: &Output, what: &str) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

fn refused(out: &Output, words: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected a refusal, it succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    for w in words {
        assert!(err.contains(w), "expected {w:?} in: {err}");
    }
}

#[test]
fn a_client_certificate_names_the_principal_over_tcp() {
    let (daemon, pki, addr) = start("3");
    daemon.deploy_sample(&["--name", "seven", "--layer", "7"]);
    daemon.deploy_sample(&["--name", "nine", "--layer", "9"]);

    // The operator's console: the Control API over TCP, within clearance 7.
    let listed = ok(
        &ctl_tls(&pki, &addr, Some("ops-console"), &["--json", "models"]),
        "ops models",
    );
    let names: Vec<&str> = listed["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["seven"], "layer 9 is above the principal's clearance");
    let deployed = ok(
        &ctl_tls(
            &pki,
            &addr,
            Some("ops-console"),
            &[
                "--json",
                "deploy",
                SAMPLE_MODEL,
                "--allow-fp32",
                "--name",
                "remote",
                "--layer",
                "6",
            ],
        ),
        "ops deploy over mTLS",
    );
    assert_eq!(deployed["state"], "Active", "{deployed}");
    ok(
        &ctl_tls(
            &pki,
            &addr,
            Some("ops-console"),
            &["--json", "infer", "seven", "--random"],
        ),
        "ops infer",
    );
    refused(
        &ctl_tls(&pki, &addr, Some("ops-console"), &["undeploy", "nine"]),
        &["PermissionDenied", "\"ops\"", "clearance 9"],
    );

    // A viewer's certificate reads but changes nothing.
    ok(
        &ctl_tls(&pki, &addr, Some("viewer-box"), &["--json", "status"]),
        "viewer status",
    );
    refused(
        &ctl_tls(&pki, &addr, Some("viewer-box"), &["undeploy", "seven"]),
        &["PermissionDenied", "\"watch\"", "needs operator"],
    );

    // No certificate: anonymous inference up to clearance 3, never Control.
    refused(
        &ctl_tls(&pki, &addr, None, &["status"]),
        &["Unauthenticated", "anonymous", "client certificate"],
    );
    refused(
        &ctl_tls(&pki, &addr, None, &["infer", "seven", "--random"]),
        &["PermissionDenied", "\"anonymous\"", "clearance 7"],
    );

    // Signed by the CA but claimed by no principal: nobody, not anonymous.
    refused(
        &ctl_tls(&pki, &addr, Some("stranger"), &["infer", "seven", "--random"]),
        &["Unauthenticated", "CN=stranger"],
    );
    // Signed by another CA: the handshake fails, nothing is served.
    let forged = ctl_tls(&pki, &addr, Some("forged"), &["--json", "models"]);
    assert!(!forged.status.success(), "a certificate from another CA was accepted");
    // An error message, not a silent death by SIGPIPE on the closed socket.
    let said = String::from_utf8_lossy(&forged.stderr);
    assert_eq!(forged.status.code(), Some(1), "{said}");
    assert!(said.starts_with("dsmilctl: "), "{said:?}");

    // Plain TCP to the TLS port is not served either.
    let plain = std::process::Command::new(ctl_binary())
        .args(["--addr", &addr, "models"])
        .env_remove("DSMIL_SOCKET")
        .output()
        .unwrap();
    assert!(!plain.status.success());
    assert_eq!(
        plain.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );

    // The audit names the certificate and the transport.
    let events = daemon.ctl_json(&["events", "--limit", "200"]);
    let events = events["events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["model"] == "remote"
            && e["principal"] == "ops"
            && e["transport"] == "tls"
            && e["peer"].as_str().unwrap_or("").contains("CN=ops-console")),
        "the deploy names its caller: {events:#?}"
    );
    assert!(
        events.iter().any(|e| e["kind"] == "denied"
            && e["principal"] == "unknown"
            && e["peer"].as_str().unwrap_or("").contains("CN=stranger")),
        "the stranger's denial is recorded: {events:#?}"
    );
}

#[test]
fn without_an_anonymous_clearance_a_caller_needs_a_certificate_even_to_infer() {
    let (daemon, pki, addr) = start("0");
    daemon.deploy_sample(&["--name", "two", "--layer", "2"]);
    refused(
        &ctl_tls(&pki, &addr, None, &["infer", "two", "--random"]),
        &["Unauthenticated", "not a known principal"],
    );
    ok(
        &ctl_tls(
            &pki,
            &addr,
            Some("ops-console"),
            &["--json", "infer", "two", "--random"],
        ),
        "ops infer",
    );
}

#[test]
fn a_broken_tls_setting_is_a_config_error_naming_the_key() {
    let (_dir, config) = common::config_with(&[
        ("tls_certificate = \"\"", "tls_certificate = \"/no/such/cert.pem\""),
        ("tls_key = \"\"", "tls_key = \"/no/such/key.pem\""),
    ]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dsmild"))
        .args(["check-config", &config])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("listeners.tls_certificate = \"/no/such/cert.pem\""),
        "{err}"
    );
    assert!(err.contains("listeners.tls_key"), "{err}");
}

/// An image-sized answer over TLS: rustls writes it as 16 KiB records,
/// which dsmild joins into larger socket writes (serve::coalesce) under the
/// encryption; dsmilctl must get back exactly what it sent.
#[test]
fn an_image_sized_answer_comes_back_whole_over_tls() {
    use common::onnx::{model, node, value};
    use dsmil_proto::onnx::GraphProto;

    let (daemon, pki, addr) = start("3");
    let shape = [1i64, 3, 224, 224];
    let echo = model(
        GraphProto {
            name: Some("echo".into()),
            node: vec![node("Identity", &["image"], &["same"])],
            input: vec![value("image", &shape)],
            output: vec![value("same", &shape)],
            ..Default::default()
        },
        &[("", 13)],
    );
    daemon.deploy(&echo, &["--name", "echo", "--allow-fp32", "--layer", "3"]);
    let sent: Vec<f32> = (0..shape.iter().product::<i64>()).map(|i| i as f32 * 0.5).collect();
    let input = pki.dir.join("image.npz");
    let mut npz = ndarray_npy::NpzWriter::new(std::fs::File::create(&input).unwrap());
    let array = ndarray::Array::from_shape_vec((1, 3, 224, 224), sent.clone()).unwrap();
    npz.add_array("image", &array).unwrap();
    npz.finish().unwrap();

    let answer = ok(
        &ctl_tls(
            &pki,
            &addr,
            None,
            &["--json", "infer", "echo", "-i", input.to_str().unwrap()],
        ),
        "anonymous infer over TLS",
    );
    let got: Vec<f32> = answer["outputs"][0]["data"]
        .as_array()
        .expect("the output's data")
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(got.len(), sent.len());
    assert!(got == sent, "the answer differs from the request");
}
