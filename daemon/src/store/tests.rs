use super::journal::open_sled;
use super::migrations::run_migration;
use super::*;
use dsmil_kinds::DeployState;

fn new_deployment(model: &str, device: u32) -> NewDeployment {
    NewDeployment {
        model: model.into(),
        sha256: "ab".repeat(32),
        size_bytes: 10,
        format: dsmil_kinds::Format::Onnx,
        classification: 7,
        note: String::new(),
        device,
        layer: 7,
        target: dsmil_kinds::Target::Gpu,
        effective_target: dsmil_kinds::Target::Cpu,
        backend: dsmil_kinds::BackendKind::OnnxRuntime,
        performance_hint: dsmil_kinds::PerformanceHint::Latency,
        workers: 0,
        precision: dsmil_kinds::Precision::Default,
        max_batch: 0,
        estimated_bytes: 1 << 20,
        probe_shapes: Vec::new(),
        probe_values: Vec::new(),
        serving: Default::default(),
        signed_by: None,
        existing: None,
    }
}

#[test]
fn a_version_records_its_signer_and_older_records_read_as_unsigned() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    let signer = SignedBy {
        key: "release".into(),
        fingerprint: format!("sha256:{}", "cd".repeat(32)),
    };
    let (version, _) = journal
        .create_deployment(NewDeployment {
            signed_by: Some(signer.clone()),
            ..new_deployment("signed", 47)
        })
        .unwrap();
    assert_eq!(version.signed_by.as_ref(), Some(&signer));
    assert_eq!(journal.version("signed", 1).unwrap().unwrap().signed_by, Some(signer));
    // A record written before the field existed.
    let old =
        r#"{"model":"m","version":1,"sha256":"ab","size_bytes":1,"format":"onnx","classification":3,"created_ms":5}"#;
    let decoded: VersionRecord = serde_json::from_str(old).unwrap();
    assert_eq!(decoded.signed_by, None);
    assert!(!serde_json::to_string(&decoded).unwrap().contains("signed_by"));
}

#[test]
fn migration_0_to_1_creates_the_trees_and_counters() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_sled(dir.path()).unwrap();
    run_migration(&db, 0).unwrap();
    let names: Vec<String> = db
        .tree_names()
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    for tree in ["meta", "models", "versions", "deployments", "events"] {
        assert!(names.iter().any(|n| n == tree), "{tree} missing from {names:?}");
    }
    let meta = db.open_tree("meta").unwrap();
    assert_eq!(
        meta.get("next_deployment_id").unwrap().unwrap().as_ref(),
        &1u64.to_be_bytes()
    );
}

#[test]
fn migration_1_to_2_adds_the_reports_tree_and_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    {
        // A version-1 journal with a deployment in it.
        let db = open_sled(dir.path()).unwrap();
        run_migration(&db, 0).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert("schema_version", &1u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    {
        // Write a deployment as version 1 would have: through the trees only.
        let db = open_sled(dir.path()).unwrap();
        assert!(!db.tree_names().iter().any(|n| n.as_ref() == b"reports"));
        db.open_tree("deployments")
            .unwrap()
            .insert(1u64.to_be_bytes(), legacy_deployment("onnxruntime"))
            .unwrap();
        db.flush().unwrap();
    }
    let journal = Journal::open(dir.path()).unwrap();
    // Opened, it runs every later step too: it ends at the current version.
    assert_eq!(journal.schema_version().unwrap(), super::migrations::SCHEMA_VERSION);
    assert!(
        journal.report::<serde_json::Value>("m", 1).unwrap().is_none(),
        "the reports tree exists and is empty"
    );
    drop(journal);
    let db = open_sled(dir.path()).unwrap();
    assert!(db.tree_names().iter().any(|n| n.as_ref() == b"reports"));
    assert!(
        db.open_tree("deployments")
            .unwrap()
            .get(1u64.to_be_bytes())
            .unwrap()
            .is_some(),
        "data kept"
    );
}

#[test]
fn a_fresh_journal_is_at_the_current_schema_and_a_newer_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    assert_eq!(journal.schema_version().unwrap(), SCHEMA_VERSION);
    drop(journal);
    {
        let db = open_sled(dir.path()).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("schema_version", &99u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let err = Journal::open(dir.path()).err().expect("a newer schema must be refused");
    assert!(matches!(err, StoreError::SchemaTooNew { found: 99, .. }), "{err}");
}

#[test]
fn versions_count_up_and_everything_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    let (v1, d1) = journal.create_deployment(new_deployment("digits", 47)).unwrap();
    let (v2, d2) = journal.create_deployment(new_deployment("digits", 47)).unwrap();
    assert_eq!((v1.version, v2.version), (1, 2));
    assert_eq!((d1.id, d2.id), (1, 2));
    for stage in &DeployState::PIPELINE[1..] {
        journal.transition(d2.id, *stage, "ok").unwrap();
    }
    drop(journal);

    let journal = Journal::open(dir.path()).unwrap();
    let d = journal.deployment(2).unwrap();
    assert_eq!(d.state, DeployState::Active);
    assert_eq!(d.history.len(), DeployState::PIPELINE.len());
    assert_eq!(journal.versions("digits").unwrap().len(), 2);
    assert_eq!(journal.models().unwrap()[0].latest_version, 2);
    let (v3, d3) = journal.create_deployment(new_deployment("digits", 47)).unwrap();
    assert_eq!((v3.version, d3.id), (3, 3), "counters continue after a reopen");
}

#[test]
fn an_invalid_transition_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    let (_, d) = journal.create_deployment(new_deployment("m", 1)).unwrap();
    let err = journal.transition(d.id, DeployState::Active, "skip").unwrap_err();
    assert!(matches!(
        err,
        StoreError::InvalidTransition {
            from: DeployState::Uploaded,
            to: DeployState::Active,
            ..
        }
    ));
    // A batch with one bad move applies none of its moves.
    let (_, other) = journal.create_deployment(new_deployment("n", 2)).unwrap();
    let err = journal
        .apply(
            &[
                (other.id, DeployState::Validating, "ok"),
                (d.id, DeployState::Retired, "bad"),
            ],
            None,
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidTransition { .. }));
    assert_eq!(journal.deployment(other.id).unwrap().state, DeployState::Uploaded);
    assert_eq!(journal.deployment(d.id).unwrap().history.len(), 1);
    assert!(matches!(
        journal.transition(99, DeployState::Failed, ""),
        Err(StoreError::UnknownDeployment(99))
    ));
}

#[test]
fn events_are_ordered_and_filtered() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    journal.create_deployment(new_deployment("a", 1)).unwrap();
    journal.create_deployment(new_deployment("b", 2)).unwrap();
    let seq = journal
        .append_event(EventRecord::of(dsmil_kinds::EventKind::Refuse, "a", ""))
        .unwrap();
    assert_eq!(seq, 3);
    let all = journal.events(0, None, 0).unwrap();
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    let a = journal.events(0, Some("a"), 0).unwrap();
    assert_eq!(
        a.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        vec!["deploy", "refuse"]
    );
    assert_eq!(journal.events(1, None, 1).unwrap()[0].seq, 2);

    let newest = journal.newest_events(0, 2, |_| true).unwrap();
    assert_eq!(newest.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 2]);
    let a_newest = journal.newest_events(0, 0, |e| e.model == "a").unwrap();
    assert_eq!(a_newest.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 1]);
    assert!(journal.newest_events(3, 0, |_| true).unwrap().is_empty());
}

#[tokio::test]
async fn blobs_are_content_addressed_verified_and_temp_files_never_linger() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let mut upload = store.begin_upload().await.unwrap();
    upload.write(b"hello ").await.unwrap();
    upload.write(b"world").await.unwrap();
    let staged = upload.finish().await.unwrap();
    let sha = staged.sha256.clone();
    assert_eq!(sha, "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
    let store2 = store.clone();
    let path = tokio::task::spawn_blocking(move || staged.commit(&store2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(path, dir.path().join("sha256").join(&sha));
    assert_eq!(store.read(&sha).unwrap(), b"hello world");

    // A dropped upload leaves nothing behind.
    let mut upload = store.begin_upload().await.unwrap();
    upload.write(b"partial").await.unwrap();
    drop(upload);
    assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);

    // A blob whose bytes changed on disk is refused, not served.
    std::fs::write(&path, b"tampered").unwrap();
    assert!(matches!(store.read(&sha), Err(StoreError::Corrupt { .. })));
    assert!(matches!(store.read(&"0".repeat(64)), Err(StoreError::MissingBlob(_))));

    // Leftovers of a crash are swept when the store opens.
    std::fs::write(dir.path().join("tmp/upload-crashed"), b"x").unwrap();
    BlobStore::open(dir.path()).unwrap();
    assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
}

#[test]
fn a_corrupt_blob_is_named_as_a_blob_and_healed_by_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let sha = store.put(b"model bytes").unwrap();
    let path = store.path(&sha);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    let err = store.read(&sha).unwrap_err().to_string();
    assert!(err.starts_with("blob "), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(!err.contains("journal"), "{err}");

    // An upload of the same bytes replaces the bad file...
    let staged = store.stage(b"model bytes").unwrap();
    assert_eq!(staged.sha256, sha);
    staged.commit(&store).unwrap();
    assert_eq!(store.read(&sha).unwrap(), b"model bytes");

    // ...and so does the daemon storing them itself.
    std::fs::write(&path, b"model bytez").unwrap();
    assert_eq!(store.put(b"model bytes").unwrap(), sha);
    assert_eq!(store.read(&sha).unwrap(), b"model bytes");
    assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);

    std::fs::remove_file(&path).unwrap();
    let err = store.read(&sha).unwrap_err().to_string();
    assert!(
        err.starts_with("blob ") && err.contains(&path.display().to_string()),
        "{err}"
    );
}

/// Journal writes after `lose` must fail, name the journal's path and say
/// what happened; none succeeds afterwards, even once the files are back.
fn assert_lost_after(lose: impl FnOnce(&std::path::Path), expect: &str) {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("journal");
    let journal = Journal::open(&dir).unwrap();
    journal.create_deployment(new_deployment("m", 1)).unwrap();
    journal.verify().unwrap();
    lose(&dir);

    let err = journal.create_deployment(new_deployment("m", 1)).unwrap_err();
    let text = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(text.contains(&dir.display().to_string()), "{text}");
    assert!(text.contains(expect), "{text}");
    assert!(journal.is_lost());
    assert!(journal.verify().is_err());
    assert!(
        journal
            .append_event(EventRecord::of(dsmil_kinds::EventKind::Refuse, "", ""))
            .is_err()
    );
    assert!(journal.set_manifest("m", Some("f")).is_err());
}

#[test]
fn a_removed_journal_directory_fails_the_next_write() {
    assert_lost_after(|dir| std::fs::remove_dir_all(dir).unwrap(), "its directory was removed");
}

#[test]
fn a_replaced_journal_directory_fails_the_next_write() {
    assert_lost_after(
        |dir| {
            std::fs::rename(dir, dir.with_extension("old")).unwrap();
            std::fs::create_dir(dir).unwrap();
        },
        "its directory was replaced",
    );
}

#[test]
fn an_emptied_journal_directory_fails_the_next_write() {
    assert_lost_after(
        |dir| {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    std::fs::remove_dir_all(path).unwrap();
                } else {
                    std::fs::remove_file(path).unwrap();
                }
            }
        },
        "was removed",
    );
}

#[test]
fn a_journal_reopened_in_place_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    journal.create_deployment(new_deployment("m", 1)).unwrap();
    drop(journal);
    let journal = Journal::open(dir.path()).unwrap();
    journal.create_deployment(new_deployment("m", 1)).unwrap();
    journal.verify().unwrap();
    assert!(!journal.is_lost());
}

#[test]
fn a_lost_journal_beside_stored_models_is_refused_at_open() {
    let state = tempfile::tempdir().unwrap();
    let (journal, blobs) = open(state.path()).unwrap();
    blobs.put(b"a model").unwrap();
    drop(journal);
    std::fs::remove_dir_all(state.path().join("journal")).unwrap();

    let err = open(state.path()).err().expect("a lost journal is refused");
    let text = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(
        text.contains(&state.path().join("journal").display().to_string()),
        "{text}"
    );
    assert!(text.contains("the journal was lost"), "{text}");
    assert!(
        !state.path().join("journal").exists(),
        "a refused open creates nothing, so the next start refuses too"
    );

    // With no models stored, a missing journal is a first start.
    std::fs::remove_dir_all(state.path().join("blobs")).unwrap();
    open(state.path()).unwrap();
}

/// A deployment as versions 1 and 2 wrote it: strings where kinds go, no
/// hint or precision field.
fn legacy_deployment(backend: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": 1, "model": "m", "version": 1, "device": 47, "layer": 7, "classification": 7,
        "target": "gpu", "effective_target": "cpu", "backend": backend, "sha256": "ab",
        "state": "Active", "history": [], "created_ms": 5
    }))
    .unwrap()
}

/// A version-2 journal as an older dsmild wrote it: strings where kinds go,
/// a deployment without the hint and precision fields.
fn journal_v2(dir: &std::path::Path, backend: &str) {
    let db = open_sled(dir).unwrap();
    run_migration(&db, 0).unwrap();
    run_migration(&db, 1).unwrap();
    db.open_tree("meta")
        .unwrap()
        .insert("schema_version", &2u32.to_be_bytes())
        .unwrap();
    db.open_tree("deployments")
        .unwrap()
        .insert(1u64.to_be_bytes(), legacy_deployment(backend))
        .unwrap();
    let mut version_key = b"m\0".to_vec();
    version_key.extend(1u32.to_be_bytes());
    let version = serde_json::json!({
        "model": "m", "version": 1, "sha256": "ab", "size_bytes": 3, "format": "onnx",
        "classification": 7, "created_ms": 5
    });
    db.open_tree("versions")
        .unwrap()
        .insert(version_key, serde_json::to_vec(&version).unwrap())
        .unwrap();
    let event = serde_json::json!({"seq": 1, "kind": "activate", "model": "m"});
    db.open_tree("events")
        .unwrap()
        .insert(1u64.to_be_bytes(), serde_json::to_vec(&event).unwrap())
        .unwrap();
    db.flush().unwrap();
}

#[test]
fn migration_2_to_3_types_every_record_and_makes_defaults_explicit() {
    let dir = tempfile::tempdir().unwrap();
    journal_v2(dir.path(), "openvino");
    let journal = Journal::open(dir.path()).unwrap();
    assert_eq!(journal.schema_version().unwrap(), 3);
    let d = journal.deployment(1).unwrap();
    assert_eq!(d.backend, dsmil_kinds::BackendKind::OpenVino);
    assert_eq!(d.effective_target, dsmil_kinds::Target::Cpu);
    assert_eq!(d.performance_hint, dsmil_kinds::PerformanceHint::Latency);
    assert_eq!(d.precision, dsmil_kinds::Precision::Default);
    assert_eq!(
        journal.version("m", 1).unwrap().unwrap().format,
        dsmil_kinds::Format::Onnx
    );
    assert_eq!(
        journal.events(0, None, 0).unwrap()[0].kind,
        dsmil_kinds::EventKind::Activate
    );
    drop(journal);
    // Written back whole: the implicit defaults are in the stored JSON now.
    let db = open_sled(dir.path()).unwrap();
    let raw = db
        .open_tree("deployments")
        .unwrap()
        .get(1u64.to_be_bytes())
        .unwrap()
        .unwrap();
    let stored: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(stored["performance_hint"], "latency");
    assert_eq!(stored["precision"], "");
}

#[test]
fn migration_2_to_3_refuses_a_spelling_no_kind_knows_and_names_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    journal_v2(dir.path(), "cuda");
    let err = Journal::open(dir.path())
        .err()
        .expect("an unknown backend is refused")
        .to_string();
    assert!(err.contains("deployment 1"), "{err}");
    assert!(
        err.contains("backend \"cuda\": expected onnxruntime or openvino"),
        "{err}"
    );
}

#[test]
fn pruning_refuses_a_journal_that_changed_since_it_was_planned() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).unwrap();
    let (_, d) = journal.create_deployment(new_deployment("a", 1)).unwrap();
    let doomed = [("a".to_owned(), 1)];
    let next = journal.next_deployment_id().unwrap();
    let seen = journal.deployments().unwrap();
    journal.transition(d.id, DeployState::Validating, "").unwrap();
    let err = journal.remove_versions(next, &seen, &doomed, &[d.id]).unwrap_err();
    assert!(matches!(err, StoreError::PruneRaced), "{err}");
    assert_eq!(journal.versions("a").unwrap().len(), 1);

    // A deployment created since: refused too.
    let seen = journal.deployments().unwrap();
    journal.create_deployment(new_deployment("b", 2)).unwrap();
    let err = journal.remove_versions(next, &seen, &doomed, &[d.id]).unwrap_err();
    assert!(matches!(err, StoreError::PruneRaced), "{err}");

    // As planned: the version, its report and its deployment go; the model
    // record stays, so numbering goes on.
    journal.put_report("a", 1, &"report").unwrap();
    let next = journal.next_deployment_id().unwrap();
    let seen = journal.deployments().unwrap();
    journal.remove_versions(next, &seen, &doomed, &[d.id]).unwrap();
    assert!(journal.versions("a").unwrap().is_empty());
    assert!(journal.report::<String>("a", 1).unwrap().is_none());
    assert!(journal.deployments().unwrap().iter().all(|r| r.model == "b"));
    let (v, _) = journal.create_deployment(new_deployment("a", 1)).unwrap();
    assert_eq!(v.version, 2);
}
