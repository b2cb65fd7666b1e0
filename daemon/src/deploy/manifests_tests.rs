//! Reading a manifest: the spec it makes, the files it names, and the
//! fingerprint that decides whether a reconciliation deploys again.

use super::*;
use dsmil_kinds::{Format, MethodName, PerformanceHint};

struct Folder {
    dir: tempfile::TempDir,
}

impl Folder {
    fn new() -> Folder {
        let folder = Folder {
            dir: tempfile::tempdir().unwrap(),
        };
        folder.write("digits.onnx", b"model bytes");
        folder.write("calib.npz", b"calibration bytes");
        folder
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Writes `text` as `<name>.toml` and reads it back as a manifest.
    fn load(&self, name: &str, text: &str) -> Result<Loaded, String> {
        let file = self.write(&format!("{name}.toml"), text.as_bytes());
        load(&file, self.path())
    }
}

const MINIMAL: &str = "name = \"digits\"\nmodel = \"digits.onnx\"\nlayer = 7\n";

#[test]
fn a_manifest_becomes_a_deploy_request_with_its_files_beside_it() {
    let folder = Folder::new();
    let loaded = folder
        .load(
            "digits",
            "name = \"digits\"\nmodel = \"digits.onnx\"\ndevice = 47\ncalibration = \"calib.npz\"\n\
             method = \"entropy\"\nperformance_hint = \"throughput\"\ninfer_requests = 3\nmax_batch = 8\n\
             classification = 5\n",
        )
        .unwrap();
    let spec = &loaded.spec;
    assert_eq!(spec.name, "digits");
    assert_eq!(
        (spec.device, spec.layer, spec.classification),
        (Some(47), None, Some(5))
    );
    assert_eq!(spec.format, Format::Onnx);
    assert_eq!(spec.method, Some(MethodName::Entropy));
    assert_eq!(spec.performance_hint, PerformanceHint::Throughput);
    assert_eq!((spec.workers, spec.max_batch), (Some(3), Some(8)));
    assert!(!spec.allow_fp32);
    assert_eq!(
        spec.note, "models.d/digits.toml",
        "the note names the manifest by default"
    );
    assert_eq!(
        loaded.files,
        [
            (Some(folder.path().join("digits.onnx")), "model"),
            (None, "weights"),
            (Some(folder.path().join("calib.npz")), "calibration"),
            (None, "validation"),
        ]
    );
}

#[test]
fn a_note_and_absolute_paths_are_kept_as_written() {
    let folder = Folder::new();
    let elsewhere = Folder::new();
    let model = elsewhere.path().join("digits.onnx");
    let text = format!("name = \"digits\"\nmodel = {model:?}\nlayer = 7\nnote = \"pinned by ops\"\n");
    let loaded = folder.load("digits", &text).unwrap();
    assert_eq!(loaded.spec.note, "pinned by ops");
    assert_eq!(loaded.files[0], (Some(model), "model"));
}

#[test]
fn the_format_follows_the_models_extension() {
    let folder = Folder::new();
    folder.write("net.xml", b"<net/>");
    folder.write("net.bin", b"weights");
    let loaded = folder
        .load(
            "net",
            "name = \"net\"\nmodel = \"net.xml\"\nweights = \"net.bin\"\nlayer = 7\n",
        )
        .unwrap();
    assert_eq!(loaded.spec.format, Format::Ir);
    assert_eq!(loaded.files[1], (Some(folder.path().join("net.bin")), "weights"));
}

#[test]
fn a_broken_manifest_says_what_is_wrong() {
    let folder = Folder::new();
    let refused = |text: &str| folder.load("bad", text).err().expect("refused");

    let unknown = refused(&format!("{MINIMAL}devise = 47\n"));
    assert!(unknown.contains("unknown field `devise`"), "{unknown}");
    let missing = refused("name = \"digits\"\nlayer = 7\n");
    assert!(missing.contains("missing field `model`"), "{missing}");
    let syntax = refused("name = \"digits\n");
    assert!(syntax.contains("line 1"), "{syntax}");
    let mistyped = refused("name = \"digits\"\nmodel = \"digits.onnx\"\ndevice = \"47\"\n");
    assert!(mistyped.contains("device"), "{mistyped}");
    let absent = refused("name = \"digits\"\nmodel = \"digits.onnx\"\nvalidation = \"val.npz\"\n");
    assert!(
        absent.starts_with(&format!("validation {}:", folder.path().join("val.npz").display())),
        "{absent}"
    );
}

#[test]
fn a_manifest_is_refused_in_the_deploy_rpcs_words() {
    let folder = Folder::new();
    let refused = |text: &str| folder.load("bad", text).err().expect("refused");
    let spec = |fields: DeploySpec| fields.parse().unwrap_err().to_string();
    let base = || DeploySpec {
        name: "digits".into(),
        ..DeploySpec::default()
    };
    assert_eq!(
        refused("name = \"../digits\"\nmodel = \"digits.onnx\"\n"),
        spec(DeploySpec {
            name: "../digits".into(),
            ..base()
        })
    );
    assert_eq!(
        refused(&format!("{MINIMAL}method = \"kl\"\n")),
        spec(DeploySpec {
            method: "kl".into(),
            ..base()
        })
    );
    assert_eq!(
        refused(&format!("{MINIMAL}infer_requests = 65\n")),
        spec(DeploySpec { workers: 65, ..base() })
    );
}

#[test]
fn the_fingerprint_changes_with_the_manifest_or_any_file_it_names_and_only_then() {
    let folder = Folder::new();
    let text = format!("{MINIMAL}calibration = \"calib.npz\"\n");
    let first = folder.load("digits", &text).unwrap().fingerprint;
    assert_eq!(first.len(), 64, "a sha256: {first}");
    assert_eq!(folder.load("digits", &text).unwrap().fingerprint, first, "stable");

    folder.write("digits.onnx", b"other model bytes");
    let new_model = folder.load("digits", &text).unwrap().fingerprint;
    assert_ne!(new_model, first);

    folder.write("calib.npz", b"other calibration bytes");
    let new_calibration = folder.load("digits", &text).unwrap().fingerprint;
    assert_ne!(new_calibration, new_model);

    let edited = folder
        .load("digits", &format!("{text}note = \"edited\"\n"))
        .unwrap()
        .fingerprint;
    assert_ne!(edited, new_calibration);

    // A file the manifest does not name is not part of it.
    folder.write("unrelated.npz", b"anything");
    assert_eq!(folder.load("digits", &text).unwrap().fingerprint, new_calibration);
}

#[test]
fn a_manifests_signature_file_is_sent_and_a_new_one_deploys_again() {
    let folder = Folder::new();
    assert_eq!(folder.load("digits", MINIMAL).unwrap().spec.signature, None);
    folder.write("digits.onnx.sig", &[7; 64]);
    let text = format!("{MINIMAL}signature = \"digits.onnx.sig\"\n");
    let first = folder.load("digits", &text).unwrap();
    assert_eq!(first.spec.signature, Some(vec![7; 64]));
    folder.write("digits.onnx.sig", &[8; 64]);
    assert_ne!(folder.load("digits", &text).unwrap().fingerprint, first.fingerprint);
    std::fs::remove_file(folder.path().join("digits.onnx.sig")).unwrap();
    let err = folder.load("digits", &text).err().expect("refused");
    assert!(
        err.starts_with("signature ") && err.contains("digits.onnx.sig"),
        "{err}"
    );
}
