//! Declarative deployments: a `models.d/` folder of TOML manifests, one per
//! model, reconciled with what serves. A new manifest deploys; a changed
//! one (the manifest, or any file it names) deploys a new version; a
//! removed one undeploys. A broken manifest is refused alone, with an
//! event naming the file and the problem, and the others still apply.
//!
//! ```toml
//! name = "digits"
//! model = "digits.onnx"          # relative to models.d/
//! device = 47                    # or: layer = 7
//! calibration = "calib.npz"      # optional; validation = "val.npz"
//! method = "entropy"             # optional; also activations, backend,
//! allow_fp32 = false             #   performance_hint, classification, note
//! signature = "digits.onnx.sig"  # optional: `dsmilctl sign`'s detached signature
//! ```
//!
//! What each manifest last deployed is remembered in the journal (a
//! fingerprint of the manifest and of its files), so a restart does not
//! redeploy what has not changed, and an unchanged failing manifest is not
//! retried until it changes.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{DeployError, DeployRequest, DeploySpec, Deployer, Staged};
use crate::store::EventRecord;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    name: String,
    model: PathBuf,
    device: Option<u32>,
    layer: Option<u32>,
    calibration: Option<PathBuf>,
    validation: Option<PathBuf>,
    /// An IR's .bin.
    weights: Option<PathBuf>,
    #[serde(default)]
    method: String,
    #[serde(default)]
    activations: String,
    #[serde(default)]
    gate_metric: String,
    /// "NAME=D0,D1,..." per input, like `--input-shape`.
    #[serde(default)]
    input_shapes: Vec<String>,
    /// "INPUT=OUTPUT" per recurrent state, like `--state`.
    #[serde(default)]
    state: Vec<String>,
    #[serde(default)]
    allow_fp32: bool,
    #[serde(default)]
    backend: String,
    #[serde(default)]
    performance_hint: String,
    #[serde(default)]
    infer_requests: u32,
    #[serde(default)]
    precision: String,
    /// 0 = serving.max_batch_size.
    #[serde(default)]
    max_batch: u64,
    /// 0 = serving.intra_op_threads.
    #[serde(default)]
    intra_op_threads: u32,
    /// Unset = serving.dynamic_batching (and its delay and sizes).
    dynamic_batching: Option<bool>,
    max_queue_delay_us: Option<u64>,
    #[serde(default)]
    preferred_batch_sizes: Vec<u64>,
    classification: Option<u32>,
    #[serde(default)]
    note: String,
    /// A detached signature file (`dsmilctl sign`), checked like a deploy's
    /// `--signature`.
    signature: Option<PathBuf>,
}

/// What a reconciliation did.
#[derive(Debug, Default, PartialEq)]
pub struct Reconciled {
    pub deployed: Vec<String>,
    pub undeployed: Vec<String>,
    pub unchanged: Vec<String>,
    /// (file, why).
    pub refused: Vec<(String, String)>,
}

/// A manifest read with its files: the spec, the staged files, and the
/// fingerprint of all of it.
struct Loaded {
    /// Parsed like a Deploy RPC's spec: the same refusals, in the same words.
    spec: DeployRequest,
    files: Vec<(Option<PathBuf>, &'static str)>,
    fingerprint: String,
}

impl Deployer {
    /// Reconciles `dir` with what serves. Blocking.
    pub fn reconcile_manifests(&self, dir: &Path) -> Reconciled {
        let mut out = Reconciled::default();
        let mut present = Vec::new();
        let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                out.refused.push((dir.display().to_string(), e.to_string()));
                return out;
            }
        };
        files.sort();
        for file in files {
            let shown = file.display().to_string();
            let loaded = match load(&file, dir) {
                Ok(l) => l,
                Err(why) => {
                    self.refuse_manifest(&shown, &why);
                    out.refused.push((shown, why));
                    continue;
                }
            };
            let name = loaded.spec.name.clone();
            if present.contains(&name) {
                let why = format!("a second manifest for model {name:?}");
                self.refuse_manifest(&shown, &why);
                out.refused.push((shown, why));
                continue;
            }
            present.push(name.clone());
            if self.journal.manifest(&name).ok().flatten().as_deref() == Some(loaded.fingerprint.as_str()) {
                out.unchanged.push(name);
                continue;
            }
            // Remembered before the outcome is known: an unchanged manifest
            // that failed is not retried until it changes.
            if let Err(e) = self.journal.set_manifest(&name, Some(&loaded.fingerprint)) {
                tracing::error!(model = %name, error = %e, "could not journal a manifest");
            }
            match self.deploy_manifest(loaded) {
                Ok(()) => out.deployed.push(name),
                Err(e) => {
                    let why = e.reason();
                    self.refuse_manifest(&shown, &why);
                    out.refused.push((shown, why));
                }
            }
        }
        for name in self.journal.manifests().unwrap_or_default() {
            if present.contains(&name) {
                continue;
            }
            match self.undeploy(&name) {
                Ok(_) | Err(DeployError::NotDeployed(_)) => out.undeployed.push(name.clone()),
                Err(e) => {
                    out.refused.push((name.clone(), e.to_string()));
                    continue;
                }
            }
            let _ = self.journal.set_manifest(&name, None);
        }
        if out != Reconciled::default() {
            tracing::info!(
                deployed = ?out.deployed,
                undeployed = ?out.undeployed,
                refused = out.refused.len(),
                "models.d reconciled"
            );
        }
        out
    }

    fn deploy_manifest(&self, loaded: Loaded) -> Result<(), DeployError> {
        let Loaded { spec, files, .. } = loaded;
        let mut staged = Vec::new();
        for (path, _) in &files {
            staged.push(match path {
                Some(p) => {
                    let bytes = std::fs::read(p).map_err(|e| crate::store::StoreError::io("reading", p, e))?;
                    Some(self.blobs.stage(&bytes)?)
                }
                None => None,
            });
        }
        let mut staged = staged.into_iter();
        let staged = Staged {
            model: staged.next().flatten().expect("the model file is always named"),
            weights: staged.next().flatten(),
            calibration: staged.next().flatten(),
            validation: staged.next().flatten(),
        };
        let attach = |b: &Option<crate::store::StagedBlob>| b.as_ref().map(|b| (b.size, b.sha256.clone()));
        let spec = DeployRequest {
            size_bytes: staged.model.size,
            sha256: staged.model.sha256.clone(),
            weights: attach(&staged.weights),
            calibration: attach(&staged.calibration),
            validation: attach(&staged.validation),
            ..spec
        };
        self.deploy(spec, staged, &mut |_| {}).map(|_| ())
    }

    /// The manifest in `dir` that declares model `name`, if any (a broken
    /// manifest counts when its `name` reads). Blocking.
    pub fn manifest_for(&self, dir: &Path, name: &str) -> Option<PathBuf> {
        #[derive(Deserialize)]
        struct Named {
            name: String,
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        files.into_iter().find(|file| {
            std::fs::read_to_string(file)
                .ok()
                .and_then(|text| toml::from_str::<Named>(&text).ok())
                .is_some_and(|m| m.name == name)
        })
    }

    fn refuse_manifest(&self, file: &str, why: &str) {
        tracing::warn!(manifest = file, "models.d: {why}");
        self.audit(EventRecord::of(
            dsmil_kinds::EventKind::ManifestRefused,
            "",
            format!("{file}: {why}"),
        ));
    }
}

/// Reads a manifest and the files it names; the error says what is wrong.
fn load(file: &Path, dir: &Path) -> Result<Loaded, String> {
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let m: Manifest = toml::from_str(&text).map_err(|e| e.to_string().trim_end().to_owned())?;
    let resolve = |p: &Path| if p.is_absolute() { p.to_owned() } else { dir.join(p) };
    let format = dsmil_kinds::Format::from_path(&m.model);
    let files = vec![
        (Some(resolve(&m.model)), "model"),
        (m.weights.as_deref().map(resolve), "weights"),
        (m.calibration.as_deref().map(resolve), "calibration"),
        (m.validation.as_deref().map(resolve), "validation"),
    ];
    let mut hasher = Sha256::new();
    hasher.update(text.as_bytes());
    for (path, what) in &files {
        if let Some(path) = path {
            let bytes = std::fs::read(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
            hasher.update(Sha256::digest(&bytes));
        }
    }
    // Part of the fingerprint: a new signature for the same model applies.
    let signature = match &m.signature {
        Some(path) => {
            let path = resolve(path);
            let bytes = std::fs::read(&path).map_err(|e| format!("signature {}: {e}", path.display()))?;
            hasher.update(Sha256::digest(&bytes));
            bytes
        }
        None => Vec::new(),
    };
    // Problems in the data are reported with the manifest's own paths.
    let shown = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    let (calibration_file, validation_file) = (shown(&m.calibration), shown(&m.validation));
    Ok(Loaded {
        spec: DeploySpec {
            calibration_file,
            validation_file,
            name: m.name,
            device: m.device,
            layer: m.layer,
            format: format.to_string(),
            size_bytes: 0,
            sha256: String::new(),
            classification: m.classification,
            note: if m.note.is_empty() {
                format!("models.d/{}", file.file_name().unwrap_or_default().to_string_lossy())
            } else {
                m.note
            },
            weights: None,
            calibration: None,
            validation: None,
            method: m.method,
            activations: m.activations,
            gate_metric: m.gate_metric,
            input_shapes: m.input_shapes,
            state: m.state,
            allow_fp32: m.allow_fp32,
            backend: m.backend,
            performance_hint: m.performance_hint,
            workers: m.infer_requests,
            precision: m.precision,
            max_batch: m.max_batch,
            signature,
            intra_op_threads: m.intra_op_threads,
            dynamic_batching: match m.dynamic_batching {
                None => String::new(),
                Some(true) => "on".into(),
                Some(false) => "off".into(),
            },
            max_queue_delay_us: m.max_queue_delay_us,
            preferred_batch_sizes: m.preferred_batch_sizes,
        }
        .parse()
        .map_err(|e| e.to_string())?,
        files,
        fingerprint: hex::encode(hasher.finalize()),
    })
}

#[cfg(test)]
#[path = "manifests_tests.rs"]
mod tests;
