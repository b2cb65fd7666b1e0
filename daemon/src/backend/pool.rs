//! A loaded model's workers: named, dedicated OS threads (never tokio's),
//! each owning one [`LoadedModel`], fed by one bounded queue.
//!
//! The bound is the back-pressure: when the queue is full, `submit` refuses at
//! once instead of letting latency grow without limit. A request whose
//! deadline passed while it waited is answered without running. A panic in
//! the runtime is caught and becomes that request's error; the thread lives on.
//! Dropping the last handle closes the queue; workers finish what was queued
//! and exit.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{BackendError, LoadedModel, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("the queue of {model} is full ({capacity} requests waiting); retry later")]
    QueueFull { model: String, capacity: usize },
    #[error("the deadline passed after {waited_ms} ms in the queue of {model}")]
    DeadlineExceeded { model: String, waited_ms: u64 },
    #[error("{model} gave no answer within {after_ms} ms")]
    TimedOut { model: String, after_ms: u64 },
    #[error("{model} is shutting down")]
    Closed { model: String },
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// What a run returns besides the outputs: where the time went.
#[derive(Debug)]
pub struct RunOutcome {
    pub outputs: Vec<Tensor>,
    pub queued: Duration,
    pub compute: Duration,
}

type Answer = Result<RunOutcome, PoolError>;

/// Where a job's answer goes: an async caller awaits a oneshot; a blocking
/// caller waits on a std channel, which can time out.
enum Reply {
    Async(oneshot::Sender<Answer>),
    Blocking(std::sync::mpsc::SyncSender<Answer>),
}

impl Reply {
    fn send(self, answer: Answer) {
        // The caller may have gone (a cancelled RPC, a timed-out check).
        let _ = match self {
            Reply::Async(tx) => tx.send(answer).map_err(drop),
            Reply::Blocking(tx) => tx.send(answer).map_err(drop),
        };
    }
}

struct Job {
    inputs: Vec<Tensor>,
    enqueued: Instant,
    deadline: Option<Instant>,
    reply: Reply,
}

impl Job {
    /// An application's request (not warmup, a health check or a probe).
    fn external(&self) -> bool {
        matches!(self.reply, Reply::Async(_))
    }
}

pub struct Pool {
    label: String,
    capacity: usize,
    queue: SyncSender<Job>,
    workers: Vec<std::thread::JoinHandle<()>>,
    /// Per worker: when its current run started (µs since `epoch()`, plus
    /// one), 0 while idle. The watchdog reads it to find a wedged runtime.
    busy: Arc<Vec<AtomicU64>>,
    /// Runs made for applications' requests that returned outputs (warmup,
    /// checks and probes excluded): the execution count, as Triton's
    /// nv_inference_exec_count, counted where the runs happen.
    executions: Arc<AtomicU64>,
}

/// The process's reference instant for `busy` stamps.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Pool {
    /// Starts one thread per model instance, named `infer-<label>-<i>`.
    pub fn start(label: &str, models: Vec<Box<dyn LoadedModel>>, capacity: usize) -> std::io::Result<Pool> {
        let (queue, jobs) = sync_channel::<Job>(capacity);
        let jobs = Arc::new(Mutex::new(jobs));
        let busy: Arc<Vec<AtomicU64>> = Arc::new(models.iter().map(|_| AtomicU64::new(0)).collect());
        let executions = Arc::new(AtomicU64::new(0));
        let mut workers = Vec::new();
        for (i, model) in models.into_iter().enumerate() {
            let jobs = Arc::clone(&jobs);
            let label = label.to_owned();
            let busy = Arc::clone(&busy);
            let executions = Arc::clone(&executions);
            workers.push(
                std::thread::Builder::new()
                    .name(format!("infer-{label}-{i}"))
                    .spawn(move || worker(&label, model, &jobs, &busy[i], &executions))?,
            );
        }
        Ok(Pool {
            label: label.to_owned(),
            capacity,
            queue,
            workers,
            busy,
            executions,
        })
    }

    /// How long the longest run in progress has been running; None when
    /// every worker is idle.
    pub fn longest_run(&self) -> Option<Duration> {
        let now = epoch().elapsed().as_micros() as u64 + 1;
        self.busy
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .filter(|&started| started > 0)
            .map(|started| Duration::from_micros(now.saturating_sub(started)))
            .max()
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// How many runs the workers have made for applications' requests.
    pub fn executions(&self) -> u64 {
        self.executions.load(Ordering::Relaxed)
    }

    /// Queues a run; the answer arrives on the returned receiver.
    pub fn submit(
        &self,
        inputs: Vec<Tensor>,
        deadline: Option<Instant>,
    ) -> Result<oneshot::Receiver<Answer>, PoolError> {
        let (reply, answer) = oneshot::channel();
        self.enqueue(inputs, deadline, Reply::Async(reply))?;
        Ok(answer)
    }

    /// Runs and waits at most `timeout`, for callers already on a blocking
    /// thread (warmup, health checks). Never call this from async code.
    pub fn run_blocking(&self, inputs: Vec<Tensor>, timeout: Duration) -> Answer {
        let (reply, answer) = sync_channel(1);
        self.enqueue(inputs, Some(Instant::now() + timeout), Reply::Blocking(reply))?;
        answer.recv_timeout(timeout).unwrap_or_else(|_| {
            Err(PoolError::TimedOut {
                model: self.label.clone(),
                after_ms: timeout.as_millis() as u64,
            })
        })
    }

    /// Closes the queue and waits for the workers to finish what was queued
    /// and drop their models, so the memory is free when this returns.
    /// Blocking: call from a blocking thread.
    pub fn close_and_join(self) {
        let Pool { queue, workers, .. } = self;
        drop(queue);
        for worker in workers {
            let _ = worker.join();
        }
    }

    fn enqueue(&self, inputs: Vec<Tensor>, deadline: Option<Instant>, reply: Reply) -> Result<(), PoolError> {
        let job = Job {
            inputs,
            enqueued: Instant::now(),
            deadline,
            reply,
        };
        match self.queue.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(PoolError::QueueFull {
                model: self.label.clone(),
                capacity: self.capacity,
            }),
            Err(TrySendError::Disconnected(_)) => Err(PoolError::Closed {
                model: self.label.clone(),
            }),
        }
    }
}

fn worker(
    label: &str,
    mut model: Box<dyn LoadedModel>,
    jobs: &Mutex<Receiver<Job>>,
    busy: &AtomicU64,
    executions: &AtomicU64,
) {
    loop {
        // The lock is held only while waiting for the next job, so idle
        // workers queue up on it and one busy worker never blocks another.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = job else {
            return; // queue closed: the deployment was retired
        };
        let queued = job.enqueued.elapsed();
        if job.deadline.is_some_and(|d| Instant::now() >= d) {
            job.reply.send(Err(PoolError::DeadlineExceeded {
                model: label.to_owned(),
                waited_ms: queued.as_millis() as u64,
            }));
            continue;
        }
        let started = Instant::now();
        busy.store(epoch().elapsed().as_micros() as u64 + 1, Ordering::Relaxed);
        if job.external() {
            // The watchdog tests wedge an application's request here.
            crate::failpoint::hit("infer-external");
        }
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| model.run(&job.inputs)));
        busy.store(0, Ordering::Relaxed);
        let compute = started.elapsed();
        if job.external() && matches!(result, Ok(Ok(_))) {
            executions.fetch_add(1, Ordering::Relaxed);
        }
        let result = match result {
            Ok(Ok(outputs)) => Ok(RunOutcome {
                outputs,
                queued,
                compute,
            }),
            Ok(Err(e)) => Err(PoolError::Backend(e)),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                tracing::error!(model = label, panic = %what, "inference thread caught a panic");
                Err(PoolError::Backend(BackendError::Panicked(what)))
            }
        };
        job.reply.send(result);
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
