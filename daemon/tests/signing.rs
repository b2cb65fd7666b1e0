//! Signed models on a real dsmild, with keys and signatures made by the real
//! dsmilctl: a layer that requires signatures refuses an unsigned and a
//! wrongly signed model (each refusal audited) and accepts a correctly
//! signed one, whose version records the key; a bad signature is refused in
//! a layer that does not require one too; a rollback to an unsigned version
//! in such a layer is refused.

mod common;

use std::path::Path;

use common::*;

/// `dsmilctl --json ARGS` without a daemon (keygen and sign are local).
fn ctl_local(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = ctl_with_socket(Path::new("/nonexistent/dsmild.sock"), &all);
    assert!(
        out.status.success(),
        "dsmilctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn refused(out: std::process::Output) -> String {
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn keygen_makes_a_private_key_only_its_owner_reads_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let keys = tempfile::tempdir().unwrap();
    let prefix = keys.path().join("release");
    let prefix = prefix.to_str().unwrap();
    let made = ctl_local(&["keygen", "--out", prefix]);
    let mode = |p: &str| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&format!("{prefix}.key")), 0o600);
    let public = std::fs::read_to_string(format!("{prefix}.pub")).unwrap();
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"), "{public}");
    assert!(public.contains(made["public_key_base64"].as_str().unwrap()), "{made}");
    assert!(made["fingerprint"].as_str().unwrap().starts_with("sha256:"), "{made}");
    let before = std::fs::read(format!("{prefix}.key")).unwrap();
    let err = refused(ctl_with_socket(Path::new("/nonexistent"), &["keygen", "--out", prefix]));
    assert!(err.contains("not overwriting"), "{err}");
    assert_eq!(std::fs::read(format!("{prefix}.key")).unwrap(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_layer_that_requires_signatures_takes_only_a_model_signed_by_a_trusted_key() {
    let keys = tempfile::tempdir().unwrap();
    let path = |name: &str| keys.path().join(name).to_str().unwrap().to_owned();
    let release = ctl_local(&["keygen", "--out", &path("release")]);
    ctl_local(&["keygen", "--out", &path("stranger")]);
    let model = path("digits.onnx");
    std::fs::copy(SAMPLE_MODEL, &model).unwrap();
    let good = ctl_local(&["sign", &model, "--key", &path("release.key")]);
    assert_eq!(good["signature"], format!("{model}.sig"));
    ctl_local(&[
        "sign",
        &model,
        "--key",
        &path("stranger.key"),
        "--out",
        &path("stranger.sig"),
    ]);

    let trusted = format!(
        "trusted_keys = [{{ name = \"release\", public_key = {} }}]",
        release["public_key_base64"]
    );
    let (dir, config) = config_with(&[("trusted_keys = []", &trusted)]);
    let daemon = Daemon::start_in(dir, &["--config", &config]);
    let deploy = |extra: &[&str]| {
        let mut args = vec!["deploy", &model, "--allow-fp32", "--name", "digits", "--device", "47"];
        args.extend_from_slice(extra);
        daemon.ctl(&args)
    };
    let fingerprint = release["fingerprint"].as_str().unwrap();

    // Version 1, unsigned, while layer 7 does not require signatures.
    assert!(deploy(&[]).status.success(), "{}", daemon.log());
    // From now on it does.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen("required_layers = []", "required_layers = [7]", 1),
    )
    .unwrap();
    let out = daemon.ctl(&["reload"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Unsigned: refused, naming the layer and the key it would take.
    let err = refused(deploy(&[]));
    assert!(err.contains("PermissionDenied"), "{err}");
    assert!(err.contains("layer 7 (EXTENDED) requires a signed model"), "{err}");
    assert!(err.contains(&format!("release {fingerprint}")), "{err}");

    // Signed by a key dsmild does not trust: refused.
    let err = refused(deploy(&["--signature", &path("stranger.sig")]));
    assert!(
        err.contains("PermissionDenied") && err.contains("does not verify"),
        "{err}"
    );
    assert!(err.contains("which requires a signed model"), "{err}");

    // The right signature over another model: refused.
    let other = path("other.onnx");
    std::fs::write(&other, common::onnx::mlp(16, 1)).unwrap();
    let sig = format!("{model}.sig");
    let err = refused(daemon.ctl(&[
        "deploy",
        &other,
        "--allow-fp32",
        "--name",
        "digits",
        "--device",
        "47",
        "--signature",
        &sig,
    ]));
    assert!(err.contains("does not verify"), "{err}");

    // A bad signature is refused where none is required as well.
    let err = refused(daemon.ctl(&[
        "deploy",
        &model,
        "--allow-fp32",
        "--name",
        "digits2",
        "--layer",
        "3",
        "--signature",
        &path("stranger.sig"),
    ]));
    assert!(
        err.contains("does not verify") && err.contains("layer 3 (SECRET)"),
        "{err}"
    );
    assert!(!err.contains("which requires"), "{err}");

    // Nothing more was recorded; every refusal is an audit event.
    assert_eq!(daemon.deployment_states(Some("digits")), [(1, "Active".to_owned())]);
    assert_eq!(daemon.deployment_states(Some("digits2")), []);
    let refusals = |model: &str| {
        // Oldest first: forward from the start.
        let events = daemon.ctl_json(&["events", "--model", model, "--kind", "refuse", "--after", "0"]);
        events["events"].as_array().unwrap().clone()
    };
    let details = |events: &[serde_json::Value]| -> Vec<String> {
        events
            .iter()
            .map(|e| e["detail"].as_str().unwrap().to_owned())
            .collect()
    };
    let events = refusals("digits");
    let shown = details(&events);
    assert_eq!(shown.len(), 3, "{shown:?}");
    assert!(shown[0].contains("requires a signed model"), "{shown:?}");
    assert!(shown[1..].iter().all(|d| d.contains("does not verify")), "{shown:?}");
    assert!(events.iter().all(|e| e["layer"] == 7), "{events:?}");
    let events = refusals("digits2");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["layer"], 3);

    // Signed by the trusted key: deployed, and the version names the key.
    let out = deploy(&["--signature", &sig]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log()
    );
    daemon.still_serves("digits").await;
    let models = daemon.ctl_json(&["models"]);
    let versions = &models["models"][0]["versions"];
    assert_eq!(versions[0]["signed_by"], "", "{models}");
    assert_eq!(versions[1]["signed_by"], "release", "{models}");
    assert_eq!(versions[1]["signed_by_fingerprint"], fingerprint, "{models}");
    let table = daemon.ctl(&["models"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("release"));

    // Rolling back to the unsigned version 1 is refused too, and audited.
    let err = refused(daemon.ctl(&["rollback", "--model", "digits"]));
    assert!(
        err.contains("PermissionDenied") && err.contains("version 1 of \"digits\" was deployed unsigned"),
        "{err}"
    );
    let shown = details(&refusals("digits"));
    assert!(shown.last().unwrap().contains("deployed unsigned"), "{shown:?}");
    daemon.still_serves("digits").await;
}

#[test]
fn a_key_that_does_not_parse_is_a_config_problem_naming_it() {
    let (dir, config) = config_with(&[(
        "trusted_keys = []",
        "trusted_keys = [{ name = \"release\", public_key = \"MCowBQYDK2VwAyEAnot-a-key\" }]",
    )]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dsmild"))
        .args(["check-config", &config])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("signing.trusted_keys[0] (name = \"release\"): not an ed25519 public key"),
        "{stderr}"
    );
    drop(dir);
}
