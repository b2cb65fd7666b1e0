//! The pool's promises, on fake models: a full queue refuses at once, a
//! request whose deadline passed is answered without running, a panicking
//! run is that request's error while every worker lives on, and
//! `close_and_join` returns only once the queue is drained and every
//! instance dropped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::backend::fake::{FakeBackend, Faults, answer};
use crate::backend::{DataType, Signature, TensorSpec};

const LONG: Duration = Duration::from_secs(30);

fn signature() -> Signature {
    let spec = |name: &str, dtype, shape: &[i64]| TensorSpec {
        name: name.into(),
        dtype,
        shape: shape.to_vec(),
    };
    Signature {
        inputs: vec![spec("x", DataType::F32, &[-1, 4])],
        outputs: vec![spec("y", DataType::F32, &[-1, 3]), spec("label", DataType::I64, &[-1])],
    }
}

fn input(rows: i64) -> Vec<Tensor> {
    vec![Tensor {
        name: "x".into(),
        dtype: DataType::F32,
        shape: vec![rows, 4],
        data: (0..rows * 4).flat_map(|i| (i as f32).to_le_bytes()).collect(),
    }]
}

/// A fake instance that reports each run's start and holds it until the
/// test lets one run through (or opens the gate for good), so a test knows
/// without sleeping which workers are busy; it counts its own drop.
struct Gated {
    inner: Box<dyn LoadedModel>,
    started: Sender<()>,
    gate: Arc<Mutex<Receiver<()>>>,
    dropped: Arc<AtomicUsize>,
}

impl LoadedModel for Gated {
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, BackendError> {
        let _ = self.started.send(());
        // One token lets one run through; Err once the sender is dropped.
        let _ = self.gate.lock().unwrap_or_else(|p| p.into_inner()).recv();
        self.inner.run(inputs)
    }
}

impl Drop for Gated {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// A pool of `workers` gated instances of one fake backend.
struct Rig {
    backend: FakeBackend,
    pool: Pool,
    started: Receiver<()>,
    open: Option<Sender<()>>,
    dropped: Arc<AtomicUsize>,
}

impl Rig {
    fn new(workers: usize, capacity: usize) -> Rig {
        let backend = FakeBackend::with_signature(signature());
        let (started_tx, started) = channel();
        let (open, gate) = channel();
        let gate = Arc::new(Mutex::new(gate));
        let dropped = Arc::new(AtomicUsize::new(0));
        let models = (0..workers)
            .map(|_| {
                Box::new(Gated {
                    inner: backend.model(signature()),
                    started: started_tx.clone(),
                    gate: Arc::clone(&gate),
                    dropped: Arc::clone(&dropped),
                }) as Box<dyn LoadedModel>
            })
            .collect();
        Rig {
            backend,
            pool: Pool::start("pool-test", models, capacity, None, &[]).unwrap(),
            started,
            open: Some(open),
            dropped,
        }
    }

    /// Waits until `n` more runs have started.
    fn runs_started(&self, n: usize) {
        for _ in 0..n {
            self.started.recv_timeout(LONG).expect("a run started");
        }
    }

    /// Lets `n` runs through.
    fn release(&self, n: usize) {
        for _ in 0..n {
            self.open.as_ref().expect("the gate is not open").send(()).unwrap();
        }
    }

    /// Lets every held run, and every later one, go on.
    fn open_gate(&mut self) {
        self.open.take();
    }
}

#[test]
fn a_full_queue_refuses_at_once() {
    let mut rig = Rig::new(1, 1);
    let running = rig.pool.submit(input(1), None).unwrap();
    rig.runs_started(1);
    let queued = rig.pool.submit(input(2), None).unwrap();
    let refused = rig.pool.submit(input(3), None).unwrap_err();
    assert!(
        matches!(&refused, PoolError::QueueFull { model, capacity: 1 } if model == "pool-test"),
        "{refused}"
    );
    rig.open_gate();
    assert_eq!(
        running.blocking_recv().unwrap().unwrap().outputs,
        answer(&signature(), &input(1))
    );
    assert_eq!(
        queued.blocking_recv().unwrap().unwrap().outputs,
        answer(&signature(), &input(2))
    );
    rig.pool.close_and_join();
}

#[test]
fn a_request_whose_deadline_passed_in_the_queue_is_answered_without_running() {
    let mut rig = Rig::new(1, 4);
    let running = rig.pool.submit(input(1), None).unwrap();
    rig.runs_started(1);
    // A deadline of now has passed by the time the worker looks at it.
    let late = rig.pool.submit(input(2), Some(Instant::now())).unwrap();
    rig.open_gate();
    assert!(running.blocking_recv().unwrap().is_ok());
    let err = late.blocking_recv().unwrap().unwrap_err();
    assert!(matches!(err, PoolError::DeadlineExceeded { .. }), "{err}");
    assert_eq!(rig.backend.runs(), 1, "the late request never ran");
    rig.pool.close_and_join();
}

#[test]
fn a_panicking_run_is_that_requests_error_and_every_worker_lives_on() {
    let rig = Rig::new(2, 8);
    rig.backend.set_faults(Faults {
        panic: true,
        ..Faults::default()
    });
    let panicked: Vec<_> = (0..2).map(|_| rig.pool.submit(input(1), None).unwrap()).collect();
    rig.runs_started(2); // one on each worker
    rig.release(2);
    for answer in panicked {
        let err = answer.blocking_recv().unwrap().unwrap_err();
        assert!(matches!(err, PoolError::Backend(BackendError::Panicked(_))), "{err}");
    }
    rig.backend.set_faults(Faults::default());
    let served: Vec<_> = (1..=2)
        .map(|rows| rig.pool.submit(input(rows), None).unwrap())
        .collect();
    // Two runs at once: both workers outlived their panic.
    rig.runs_started(2);
    rig.release(2);
    for (rows, outcome) in (1..=2).zip(served) {
        assert_eq!(
            outcome.blocking_recv().unwrap().unwrap().outputs,
            answer(&signature(), &input(rows))
        );
    }
    assert_eq!(
        rig.dropped.load(Ordering::SeqCst),
        0,
        "no instance went down with its panic"
    );
    rig.pool.close_and_join();
    assert_eq!(rig.dropped.load(Ordering::SeqCst), 2);
}

#[test]
fn close_and_join_drains_the_queue_and_drops_every_instance() {
    let mut rig = Rig::new(2, 4);
    let answers: Vec<_> = (1..=4)
        .map(|rows| rig.pool.submit(input(rows), None).unwrap())
        .collect();
    rig.runs_started(2);
    assert!(rig.pool.longest_run().is_some(), "both workers are busy");
    rig.open_gate();
    rig.pool.close_and_join();
    assert_eq!(
        rig.dropped.load(Ordering::SeqCst),
        2,
        "every instance is dropped on return"
    );
    for (rows, mut answer_rx) in (1..=4).zip(answers) {
        let outcome = answer_rx
            .try_recv()
            .expect("answered before the join returned")
            .unwrap();
        assert_eq!(outcome.outputs, answer(&signature(), &input(rows)));
    }
}

/// A batched model that answers each row with itself and reports the rows
/// of each run, held at a gate like `Gated`.
struct Echo {
    signature: Signature,
    runs: Sender<i64>,
    gate: Arc<Mutex<Receiver<()>>>,
}

impl LoadedModel for Echo {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, BackendError> {
        let _ = self.runs.send(inputs[0].shape[0]);
        let _ = self.gate.lock().unwrap_or_else(|p| p.into_inner()).recv();
        Ok(vec![Tensor {
            name: "y".into(),
            ..inputs[0].clone()
        }])
    }
}

/// A pool of one `Echo` instance batching with `batching`; the returned
/// sender opens the gate (dropped: every run goes through), the receiver
/// reports each run's rows.
fn echo_pool(batching: Batching) -> (Pool, Sender<()>, Receiver<i64>) {
    let spec = |name: &str| TensorSpec {
        name: name.into(),
        dtype: DataType::F32,
        shape: vec![-1, 4],
    };
    let (runs_tx, runs) = channel();
    let (open, gate) = channel::<()>();
    let model = Echo {
        signature: Signature {
            inputs: vec![spec("x")],
            outputs: vec![spec("y")],
        },
        runs: runs_tx,
        gate: Arc::new(Mutex::new(gate)),
    };
    let pool = Pool::start("batch-test", vec![Box::new(model)], 16, Some(batching), &[]).unwrap();
    (pool, open, runs)
}

#[test]
fn queued_requests_run_as_one_batch_and_each_gets_its_own_rows() {
    let batching = Batching {
        max_rows: 8,
        delay: Duration::ZERO,
        preferred: Vec::new(),
    };
    let (pool, open, runs) = echo_pool(batching.clone());
    let rows_of_next_run = || runs.recv_timeout(LONG).expect("a run started");

    // One request runs alone; while it runs, three more queue up.
    let first = pool.submit(input(1), None).unwrap();
    assert_eq!(rows_of_next_run(), 1);
    let queued: Vec<_> = [2, 3, 4]
        .iter()
        .map(|&r| pool.submit(input(r), None).unwrap())
        .collect();
    drop(open);
    // 2 + 3 rows fit the max batch of 8; the 4-row request does not and runs
    // next, alone.
    assert_eq!(rows_of_next_run(), 5);
    assert_eq!(rows_of_next_run(), 4);

    assert_eq!(
        first.blocking_recv().unwrap().unwrap().outputs[0].data,
        input(1)[0].data
    );
    for (answer, rows) in queued.into_iter().zip([2, 3, 4]) {
        let out = answer.blocking_recv().unwrap().unwrap().outputs;
        assert_eq!(out[0].shape, [rows, 4]);
        assert_eq!(out[0].data, input(rows)[0].data, "each request gets its own rows back");
    }
    assert_eq!(pool.executions(), 3, "three runs for four requests");
    assert_eq!(pool.batching(), Some(&batching));
}

#[test]
fn a_batch_that_reaches_a_preferred_size_runs_without_waiting_out_the_delay() {
    // A delay far longer than the test's patience: only the preferred size
    // can make these runs start.
    let (pool, open, runs) = echo_pool(Batching {
        max_rows: 8,
        delay: Duration::from_secs(600),
        preferred: vec![2],
    });
    drop(open);
    let answers: Vec<_> = (0..4).map(|_| pool.submit(input(1), None).unwrap()).collect();
    let rows_of_next_run = || runs.recv_timeout(LONG).expect("a run started before the delay");
    assert_eq!(rows_of_next_run(), 2);
    assert_eq!(rows_of_next_run(), 2);
    for answer in answers {
        assert_eq!(answer.blocking_recv().unwrap().unwrap().outputs[0].shape, [1, 4]);
    }
}

#[test]
fn a_batch_that_jumps_past_the_largest_preferred_size_runs_at_once() {
    let (pool, open, runs) = echo_pool(Batching {
        max_rows: 16,
        delay: Duration::from_secs(600),
        preferred: vec![4],
    });
    drop(open);
    // 3 rows, then 2: past 4 without ever being 4.
    let a = pool.submit(input(3), None).unwrap();
    let b = pool.submit(input(2), None).unwrap();
    assert_eq!(runs.recv_timeout(LONG).expect("a run before the delay"), 5);
    assert_eq!(a.blocking_recv().unwrap().unwrap().outputs[0].shape, [3, 4]);
    assert_eq!(b.blocking_recv().unwrap().unwrap().outputs[0].shape, [2, 4]);
}
