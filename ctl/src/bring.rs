//! Where the model an operator names actually is: a model file as given; a
//! Hugging Face-style snapshot directory (`model.onnx`, `onnx/model.onnx`
//! or `openvino_model.xml` with its .bin, beside a `config.json`); or a
//! `.tar`, `.tar.gz` or `.tgz` of one, unpacked into a temporary directory
//! first (entries that would land outside it are refused by `tar`). Formats
//! dsmil cannot take directly get the command that converts them.
//!
//! Local only: it reads the filesystem and never talks to dsmild.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The model file (and an IR's weights) to upload; holds the unpacked
/// archive, if any, until dropped.
pub struct Located {
    pub model: PathBuf,
    pub weights: Option<PathBuf>,
    _unpacked: Option<tempfile::TempDir>,
}

/// Where in a snapshot the model is looked for, in this order.
const SNAPSHOT_MODELS: &[&str] = &[
    "model.onnx",
    "onnx/model.onnx",
    "openvino_model.xml",
    "openvino/openvino_model.xml",
];

pub fn locate(path: &Path) -> anyhow::Result<Located> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if path.is_dir() {
        return in_snapshot(path, None);
    }
    if [".tar", ".tar.gz", ".tgz"].iter().any(|ext| name.ends_with(ext)) {
        let dir = tempfile::tempdir().context("a temporary directory to unpack the archive")?;
        let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        let reader: Box<dyn std::io::Read> = match name.ends_with(".tar") {
            true => Box::new(file),
            false => Box::new(flate2::read::GzDecoder::new(file)),
        };
        tar::Archive::new(reader)
            .unpack(dir.path())
            .with_context(|| format!("unpacking {}", path.display()))?;
        // An archive of a snapshot usually holds its one top directory.
        let root = single_directory(dir.path()).unwrap_or_else(|| dir.path().to_owned());
        return in_snapshot(&root, Some(dir));
    }
    if let Some(how) = conversion(&name) {
        bail!("{} is {how}", path.display());
    }
    Ok(Located {
        model: path.to_owned(),
        weights: None,
        _unpacked: None,
    })
}

/// What to do with a file dsmil cannot serve, by its name.
fn conversion(name: &str) -> Option<&'static str> {
    let ends = |ext: &str| name.ends_with(ext);
    if ends(".pt") || ends(".pth") || ends(".ckpt") || ends(".bin") && name.starts_with("pytorch_model") {
        return Some(
            "a PyTorch checkpoint, not a model dsmil can serve: export it to ONNX first, e.g. \
             torch.onnx.export(model, example_input, \"model.onnx\", opset_version=17), or for a Hugging Face \
             checkpoint `optimum-cli export onnx --model DIR out/`; then deploy model.onnx",
        );
    }
    if ends(".safetensors") {
        return Some(
            "a safetensors weights file (weights without the model's graph): export the model to ONNX \
             (`optimum-cli export onnx --model DIR out/` for a Hugging Face checkpoint) and deploy model.onnx",
        );
    }
    if ends(".pb") || ends(".pdmodel") || ends(".h5") || ends(".keras") {
        return Some(
            "a TensorFlow or PaddlePaddle model: convert it with OpenVINO's converter (`ovc PATH` writes \
             model.xml and model.bin; pip install openvino) or to ONNX (tf2onnx, paddle2onnx), then deploy that",
        );
    }
    None
}

fn in_snapshot(dir: &Path, unpacked: Option<tempfile::TempDir>) -> anyhow::Result<Located> {
    for candidate in SNAPSHOT_MODELS {
        let model = dir.join(candidate);
        if model.is_file() {
            let weights = model
                .extension()
                .is_some_and(|e| e == "xml")
                .then(|| model.with_extension("bin"))
                .filter(|b| b.is_file());
            return Ok(Located {
                model,
                weights,
                _unpacked: unpacked,
            });
        }
    }
    if dir.join("saved_model.pb").is_file() || has_extension(dir, "pdmodel") {
        bail!(
            "{} is a TensorFlow SavedModel or PaddlePaddle model: convert it with OpenVINO's converter (`ovc {}` \
             writes model.xml and model.bin) or to ONNX (tf2onnx, paddle2onnx), then deploy that",
            dir.display(),
            dir.display()
        );
    }
    let onnx: Vec<String> = walk(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .filter_map(|p| p.strip_prefix(dir).ok().map(|p| p.display().to_string()))
        .collect();
    match onnx.as_slice() {
        [] => bail!(
            "{} holds no model dsmil knows ({}); name the model file itself",
            dir.display(),
            SNAPSHOT_MODELS.join(", ")
        ),
        [only] => Ok(Located {
            model: dir.join(only),
            weights: None,
            _unpacked: unpacked,
        }),
        many => bail!(
            "{} holds several ONNX files ({}) and no model.onnx: name the one to deploy",
            dir.display(),
            many.join(", ")
        ),
    }
}

fn single_directory(dir: &Path) -> Option<PathBuf> {
    let entries: Vec<_> = std::fs::read_dir(dir).ok()?.filter_map(Result::ok).collect();
    match entries.as_slice() {
        [one] if one.path().is_dir() => Some(one.path()),
        _ => None,
    }
}

fn has_extension(dir: &Path, ext: &str) -> bool {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.path().extension().is_some_and(|x| x == ext))
        })
        .unwrap_or(false)
}

/// Files under `dir`, two levels deep (snapshots keep models near the top).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            files.extend(
                std::fs::read_dir(&path)
                    .into_iter()
                    .flatten()
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_file()),
            );
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            let path = dir.path().join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"x").unwrap();
        }
        dir
    }

    #[test]
    fn a_snapshot_directory_names_its_model() {
        let d = snapshot(&["config.json", "onnx/model.onnx", "onnx/model_quantized.onnx"]);
        assert_eq!(locate(d.path()).unwrap().model, d.path().join("onnx/model.onnx"));
        let d = snapshot(&["config.json", "openvino_model.xml", "openvino_model.bin"]);
        let found = locate(d.path()).unwrap();
        assert_eq!(found.weights, Some(d.path().join("openvino_model.bin")));
        let d = snapshot(&["config.json", "a.onnx", "b.onnx"]);
        let err = locate(d.path()).err().unwrap().to_string();
        assert!(err.contains("a.onnx, b.onnx"), "{err}");
        let d = snapshot(&["saved_model.pb", "variables/variables.index"]);
        assert!(locate(d.path()).err().unwrap().to_string().contains("ovc"));
    }

    #[test]
    fn a_tarball_of_a_snapshot_is_unpacked_and_searched() {
        let d = snapshot(&["snap/config.json", "snap/model.onnx"]);
        for gz in [false, true] {
            let tar_path = d.path().join(if gz { "snap.tar.gz" } else { "snap.tar" });
            let file = std::fs::File::create(&tar_path).unwrap();
            let writer: Box<dyn std::io::Write> = match gz {
                true => Box::new(flate2::write::GzEncoder::new(file, flate2::Compression::fast())),
                false => Box::new(file),
            };
            let mut builder = tar::Builder::new(writer);
            builder.append_dir_all("snap", d.path().join("snap")).unwrap();
            builder.into_inner().unwrap().flush().unwrap();
            let found = locate(&tar_path).unwrap();
            assert!(found.model.ends_with("snap/model.onnx"), "{}", found.model.display());
            assert!(found.model.is_file());
        }
    }

    #[test]
    fn a_checkpoint_gets_the_export_command() {
        for name in ["model.pt", "weights.pth", "model.safetensors", "pytorch_model.bin"] {
            let err = locate(Path::new(name)).err().unwrap().to_string();
            assert!(err.contains("export"), "{name}: {err}");
        }
        assert!(locate(Path::new("model.onnx")).is_ok());
    }
}
