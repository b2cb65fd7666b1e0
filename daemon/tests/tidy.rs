//! The codebase's dependency rules, checked by reading the sources (as
//! rust-analyzer's tidy tests do), so that a change breaking one fails here
//! with the file and the line rather than growing a cycle quietly. The rules
//! are listed in ARCHITECTURE.md ("Dependency rules"); change both together.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The daemon's modules from the bottom up: each may use only the modules
/// before it. (The `dsmil_kinds` crate sits below all of them.)
const LAYERS: &[&str] = &[
    "failpoint",
    "topology",
    "access",
    "config",
    "model",
    "store",
    "backend",
    "monitor",
    "compress",
    "deploy",
    "reload",
    "systemd",
    "logging",
    "serve",
    "daemon",
];

/// External crates only one module (and its sub-files) may name.
const OWNED_CRATES: &[(&str, &[&str])] = &[
    ("ort::", &["backend"]),
    ("openvino::", &["backend"]),
    ("openvino_sys::", &["backend"]),
    ("sled::", &["store"]),
    // The wire is serve's; daemon.rs only wires the listeners.
    ("tonic::", &["serve", "daemon"]),
    ("tonic_health::", &["serve", "daemon"]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every source file with its top-level module ("deploy" for
/// src/deploy/pipeline.rs, "daemon" for src/daemon.rs).
fn sources() -> Vec<(String, PathBuf)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&src(), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(src()).unwrap().to_owned();
            let top = rel.components().next().unwrap().as_os_str().to_string_lossy();
            (top.trim_end_matches(".rs").to_owned(), path)
        })
        .collect()
}

/// Tests may reach across layers to build what they test.
fn is_test_file(path: &Path) -> bool {
    path.file_name().unwrap().to_string_lossy().ends_with("tests.rs")
}

/// The file's code lines (comments dropped), numbered from 1.
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(i, l)| (i + 1, l.to_owned()))
        .collect()
}

/// `crate::<module>` references in a line, `crate::{a, b::c}` included
/// (a group is read to the end of the line).
fn crate_refs(line: &str) -> Vec<&str> {
    fn ident(s: &str) -> &str {
        let s = s.trim_start();
        &s[..s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len())]
    }
    let mut refs = Vec::new();
    for (i, _) in line.match_indices("crate::") {
        let rest = &line[i + "crate::".len()..];
        match rest.strip_prefix('{') {
            Some(group) => refs.extend(group.split(',').map(ident).filter(|m| !m.is_empty())),
            None => refs.push(ident(rest)),
        }
    }
    refs
}

#[test]
fn modules_use_only_the_layers_below_them() {
    let rank: BTreeMap<&str, usize> = LAYERS.iter().enumerate().map(|(i, m)| (*m, i)).collect();
    let mut violations = Vec::new();
    for (module, path) in sources() {
        if module == "lib" || module == "main" || is_test_file(&path) {
            continue;
        }
        let Some(&own) = rank.get(module.as_str()) else {
            violations.push(format!("{}: module {module} is not in LAYERS", path.display()));
            continue;
        };
        for (n, line) in code_lines(&path) {
            for used in crate_refs(&line) {
                if let Some(&theirs) = rank.get(used)
                    && used != module
                    && theirs > own
                {
                    violations.push(format!(
                        "{}:{n}: {module} uses {used}, a layer above it",
                        path.display()
                    ));
                }
            }
        }
    }
    assert!(violations.is_empty(), "\n{}", violations.join("\n"));
}

#[test]
fn runtimes_storage_and_the_wire_each_have_one_owner() {
    let mut violations = Vec::new();
    for (module, path) in sources() {
        for (n, line) in code_lines(&path) {
            for (krate, owners) in OWNED_CRATES {
                let named = line
                    .match_indices(krate)
                    .any(|(i, _)| i == 0 || !line[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_'));
                if named && !owners.contains(&module.as_str()) {
                    violations.push(format!(
                        "{}:{n}: {module} names {krate} (only {owners:?} may)",
                        path.display()
                    ));
                }
            }
        }
    }
    assert!(violations.is_empty(), "\n{}", violations.join("\n"));
}

#[test]
fn grpc_statuses_are_made_only_in_serve_status() {
    let mut violations = Vec::new();
    for (_, path) in sources() {
        if path.ends_with("serve/status.rs") || is_test_file(&path) {
            continue;
        }
        for (n, line) in code_lines(&path) {
            if line.contains("Status::new(")
                || line.contains("Status::internal(")
                || line.contains("Status::invalid_argument(")
                || line.contains("Status::not_found(")
                || line.contains("Status::unavailable(")
                || line.contains("Status::failed_precondition(")
                || line.contains("Status::permission_denied(")
                || line.contains("Status::resource_exhausted(")
                || line.contains("Status::unimplemented(")
            {
                violations.push(format!(
                    "{}:{n}: a gRPC status made outside serve/status.rs",
                    path.display()
                ));
            }
        }
    }
    assert!(violations.is_empty(), "\n{}", violations.join("\n"));
}

#[test]
fn every_module_file_says_what_it_owns() {
    let missing: Vec<String> = sources()
        .into_iter()
        .filter(|(_, path)| !is_test_file(path))
        .filter(|(_, path)| !std::fs::read_to_string(path).unwrap().starts_with("//!"))
        .map(|(_, path)| path.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a //! module doc:\n{}",
        missing.join("\n")
    );
}

#[test]
fn main_is_wiring_only_and_the_floor_crate_imports_nothing_of_ours() {
    let main = std::fs::read_to_string(src().join("main.rs")).unwrap();
    assert!(main.lines().count() < 100, "main.rs has grown past wiring");
    let kinds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kinds/Cargo.toml");
    let manifest = std::fs::read_to_string(kinds).unwrap();
    for ours in ["dsmild", "dsmil-proto", "dsmilctl"] {
        assert!(!manifest.contains(ours), "the floor crate depends on {ours}");
    }
}
