use super::journal::run_migration;
use super::*;
use crate::deploy::DeployState;

fn new_deployment(model: &str, device: u32) -> NewDeployment {
    NewDeployment {
        model: model.into(),
        sha256: "ab".repeat(32),
        size_bytes: 10,
        format: "onnx".into(),
        classification: 7,
        note: String::new(),
        device,
        layer: 7,
        target: "gpu".into(),
        effective_target: "cpu".into(),
        backend: "onnxruntime".into(),
        performance_hint: "latency".into(),
        workers: 0,
        precision: String::new(),
        estimated_bytes: 1 << 20,
        existing: None,
    }
}

#[test]
fn migration_0_to_1_creates_the_trees_and_counters() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
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
        let db = sled::open(dir.path()).unwrap();
        run_migration(&db, 0).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert("schema_version", &1u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    {
        // Write a deployment as version 1 would have: through the trees only.
        let db = sled::open(dir.path()).unwrap();
        assert!(!db.tree_names().iter().any(|n| n.as_ref() == b"reports"));
        db.open_tree("deployments")
            .unwrap()
            .insert(1u64.to_be_bytes(), b"{}".to_vec())
            .unwrap();
        db.flush().unwrap();
    }
    let journal = Journal::open(dir.path()).unwrap();
    assert_eq!(journal.schema_version().unwrap(), 2);
    assert!(
        journal.report("m", 1).unwrap().is_none(),
        "the reports tree exists and is empty"
    );
    drop(journal);
    let db = sled::open(dir.path()).unwrap();
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
        let db = sled::open(dir.path()).unwrap();
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
        .append_event(EventRecord {
            kind: "refuse".into(),
            model: "a".into(),
            ..EventRecord::default()
        })
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
