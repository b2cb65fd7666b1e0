//! A loaded model's workers: named, dedicated OS threads (never tokio's),
//! each owning one [`LoadedModel`], fed by one bounded queue
//! ([`super::queue`], which wakes the most recently idle worker first).
//!
//! The bound is the back-pressure: when the queue is full, `submit` refuses at
//! once instead of letting latency grow without limit. A request whose
//! deadline passed while it waited is answered without running. A panic in
//! the runtime is caught and becomes that request's error; the thread lives on.
//! Dropping the last handle closes the queue; workers finish what was queued
//! and exit (`close_and_join` waits for that).
//!
//! Dynamic batching, for a batched model: a worker that takes an
//! application's request also takes the compatible requests already queued
//! (or arriving within `Batching::delay`) up to the deployment's max batch,
//! runs them as one batch and gives each its own rows of the outputs. A run
//! that fails, or whose outputs are not split by rows, is run again request
//! by request, so each caller gets its own answer or error.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::queue::{Gathering, JobQueue, Refused};
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

/// Dynamic batching: at most `max_rows` rows in one run, waiting at most
/// `delay` for more once a request is taken (zero: only what is queued).
/// A batch that reaches one of the `preferred` sizes stops waiting: it
/// takes only what is already queued, and runs at once when it reaches the
/// largest (Triton's preferred_batch_size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batching {
    pub max_rows: usize,
    pub delay: Duration,
    pub preferred: Vec<usize>,
}

pub struct Pool {
    label: String,
    queue: Arc<JobQueue<Job>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    /// Per worker: when its current run started (µs since `epoch()`, plus
    /// one), 0 while idle. The watchdog reads it to find a wedged runtime.
    busy: Arc<Vec<AtomicU64>>,
    /// Runs made for applications' requests that returned outputs (warmup,
    /// checks and probes excluded): the execution count, as Triton's
    /// nv_inference_exec_count, counted where the runs happen.
    executions: Arc<AtomicU64>,
    batching: Option<Batching>,
}

/// The process's reference instant for `busy` stamps.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Pool {
    /// Starts one thread per model instance, named `infer-<label>-<i>`;
    /// thread `i` pins itself to the first of `cpus[i]` when given (the
    /// runtime's own threads got the rest at load).
    pub fn start(
        label: &str,
        models: Vec<Box<dyn LoadedModel>>,
        capacity: usize,
        batching: Option<Batching>,
        cpus: &[Vec<usize>],
    ) -> std::io::Result<Pool> {
        let queue = Arc::new(JobQueue::new(models.len(), capacity));
        let busy: Arc<Vec<AtomicU64>> = Arc::new(models.iter().map(|_| AtomicU64::new(0)).collect());
        let executions = Arc::new(AtomicU64::new(0));
        let mut workers = Vec::new();
        for (i, model) in models.into_iter().enumerate() {
            let jobs = Arc::clone(&queue);
            let label = label.to_owned();
            let busy = Arc::clone(&busy);
            let executions = Arc::clone(&executions);
            let batching = batching.clone();
            let cpu = cpus.get(i).and_then(|c| c.first()).copied();
            workers.push(
                std::thread::Builder::new()
                    .name(format!("infer-{label}-{i}"))
                    .spawn(move || {
                        if let Some(cpu) = cpu {
                            pin_to(cpu, &label);
                        }
                        let mut w = Worker {
                            label: &label,
                            model,
                            busy: &busy[i],
                            executions: &executions,
                        };
                        w.serve(&jobs, i, batching)
                    })?,
            );
        }
        Ok(Pool {
            label: label.to_owned(),
            queue,
            workers,
            busy,
            executions,
            batching,
        })
    }

    /// Worker threads (instances of the model).
    pub fn instances(&self) -> usize {
        self.workers.len()
    }

    /// The dynamic batching in force, if any.
    pub fn batching(&self) -> Option<&Batching> {
        self.batching.as_ref()
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
    pub fn close_and_join(mut self) {
        self.queue.close();
        for worker in self.workers.drain(..) {
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
        match self.queue.push(job) {
            Ok(()) => Ok(()),
            Err(Refused::Full(_)) => Err(PoolError::QueueFull {
                model: self.label.clone(),
                capacity: self.queue.capacity(),
            }),
            Err(Refused::Closed(_)) => Err(PoolError::Closed {
                model: self.label.clone(),
            }),
        }
    }
}

impl Drop for Pool {
    /// The last handle gone: the workers finish what is queued and exit.
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// One worker thread's state.
struct Worker<'a> {
    label: &'a str,
    model: Box<dyn LoadedModel>,
    busy: &'a AtomicU64,
    executions: &'a AtomicU64,
}

impl Worker<'_> {
    fn serve(&mut self, jobs: &JobQueue<Job>, me: usize, batching: Option<Batching>) {
        let batching = batching.as_ref();
        loop {
            // An application's request with rows starts a batch when batching
            // is on; warmup, checks and probes run alone.
            let starts_batch = |job: &Job| batching.is_some() && job.external() && rows(job).is_some();
            let Some((first, gathering)) = jobs.take(me, starts_batch) else {
                return; // queue closed and drained: the deployment was retired
            };
            let (batch, carried) = match (batching, gathering) {
                (Some(b), Some(gathering)) => gather(gathering, first, b),
                _ => (vec![first], None),
            };
            let batch: Vec<Job> = batch.into_iter().filter_map(|job| self.unexpired(job)).collect();
            match batch.len() {
                0 => {}
                1 => self.run_one(batch.into_iter().next().expect("one")),
                _ => self.run_batch(batch),
            }
            if let Some(job) = carried.and_then(|job| self.unexpired(job)) {
                self.run_one(job);
            }
        }
    }

    /// The job, unless its deadline passed while it waited (then answered).
    fn unexpired(&self, job: Job) -> Option<Job> {
        if job.deadline.is_some_and(|d| Instant::now() >= d) {
            let waited_ms = job.enqueued.elapsed().as_millis() as u64;
            job.reply.send(Err(PoolError::DeadlineExceeded {
                model: self.label.to_owned(),
                waited_ms,
            }));
            return None;
        }
        Some(job)
    }

    /// One run of the model, timed and guarded against panics.
    fn run(&mut self, inputs: &[Tensor], external: bool) -> (Result<Vec<Tensor>, PoolError>, Duration) {
        let started = Instant::now();
        self.busy
            .store(epoch().elapsed().as_micros() as u64 + 1, Ordering::Relaxed);
        if external {
            // The watchdog tests wedge an application's request here.
            crate::failpoint::hit("infer-external");
        }
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| self.model.run(inputs)));
        self.busy.store(0, Ordering::Relaxed);
        let compute = started.elapsed();
        if external && matches!(result, Ok(Ok(_))) {
            self.executions.fetch_add(1, Ordering::Relaxed);
        }
        let result = match result {
            Ok(Ok(outputs)) => Ok(outputs),
            Ok(Err(e)) => Err(PoolError::Backend(e)),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                tracing::error!(model = self.label, panic = %what, "inference thread caught a panic");
                Err(PoolError::Backend(BackendError::Panicked(what)))
            }
        };
        (result, compute)
    }

    fn run_one(&mut self, job: Job) {
        let queued = job.enqueued.elapsed();
        let (result, compute) = self.run(&job.inputs, job.external());
        job.reply.send(result.map(|outputs| RunOutcome {
            outputs,
            queued,
            compute,
        }));
    }

    /// Runs `jobs` (compatible, batched) as one batch and splits the
    /// outputs by rows; falls back to one run each when that cannot be done.
    fn run_batch(&mut self, jobs: Vec<Job>) {
        let counts: Vec<usize> = jobs.iter().map(|j| rows(j).expect("gathered jobs have rows")).collect();
        let total: usize = counts.iter().sum();
        let inputs: Vec<Tensor> = (0..jobs[0].inputs.len())
            .map(|k| {
                let first = &jobs[0].inputs[k];
                let mut shape = first.shape.clone();
                shape[0] = total as i64;
                Tensor {
                    name: first.name.clone(),
                    dtype: first.dtype,
                    shape,
                    data: {
                        let mut data = Vec::with_capacity(jobs.iter().map(|j| j.inputs[k].data.len()).sum());
                        for job in &jobs {
                            data.extend_from_slice(&job.inputs[k].data);
                        }
                        data.into()
                    },
                }
            })
            .collect();
        let (result, compute) = self.run(&inputs, true);
        let split = result.ok().and_then(|outputs| split_rows(&outputs, &counts));
        let Some(parts) = split else {
            // Each request gets its own answer or its own error.
            for job in jobs {
                self.run_one(job);
            }
            return;
        };
        for (job, outputs) in jobs.into_iter().zip(parts) {
            let queued = job.enqueued.elapsed().saturating_sub(compute);
            job.reply.send(Ok(RunOutcome {
                outputs,
                queued,
                compute,
            }));
        }
    }
}

/// A job's rows along the batch dimension: every input has a first
/// dimension, and they agree.
fn rows(job: &Job) -> Option<usize> {
    let first = *job.inputs.first()?.shape.first()?;
    job.inputs
        .iter()
        .all(|t| t.shape.first() == Some(&first))
        .then_some(first as usize)
        .filter(|&r| r > 0)
}

/// Whether `b` can share a run with `a`: the same inputs, types and shapes
/// but for the batch dimension.
fn compatible(a: &Job, b: &Job) -> bool {
    a.inputs.len() == b.inputs.len()
        && a.inputs.iter().zip(&b.inputs).all(|(x, y)| {
            x.name == y.name && x.dtype == y.dtype && x.shape.len() == y.shape.len() && x.shape[1..] == y.shape[1..]
        })
}

/// `first` and the compatible applications' jobs queued behind it (or
/// arriving within the delay), up to `max_rows`; the first job that does
/// not fit is returned to run next, alone.
fn gather(mut queue: Gathering<'_, Job>, first: Job, b: &Batching) -> (Vec<Job>, Option<Job>) {
    let mut count = rows(&first).unwrap_or(1);
    let until = Instant::now() + b.delay;
    let largest_preferred = b.preferred.iter().copied().max();
    let mut batch = vec![first];
    while count < b.max_rows && largest_preferred.is_none_or(|p| count < p) {
        let preferred_reached = b.preferred.iter().any(|&p| p <= count);
        let Some(job) = queue.next((!preferred_reached).then_some(until)) else {
            break;
        };
        match rows(&job) {
            Some(r) if job.external() && compatible(&batch[0], &job) && count + r <= b.max_rows => {
                count += r;
                batch.push(job);
            }
            _ => return (batch, Some(job)),
        }
    }
    (batch, None)
}

/// Each job's rows of `outputs`, if every output has the batch's rows as
/// its first dimension; None otherwise (the run is not split by rows).
pub fn split_rows(outputs: &[Tensor], counts: &[usize]) -> Option<Vec<Vec<Tensor>>> {
    let total: usize = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let mut parts: Vec<Vec<Tensor>> = counts.iter().map(|_| Vec::with_capacity(outputs.len())).collect();
    for out in outputs {
        if out.shape.first().copied() != Some(total as i64) || out.data.len() % total != 0 {
            return None;
        }
        let per_row = out.data.len() / total;
        let mut offset = 0;
        for (part, &n) in parts.iter_mut().zip(counts) {
            let mut shape = out.shape.clone();
            shape[0] = n as i64;
            part.push(Tensor {
                name: out.name.clone(),
                dtype: out.dtype,
                shape,
                // A slice of the batch's output, shared rather than copied.
                data: out.data.slice(offset..offset + n * per_row),
            });
            offset += n * per_row;
        }
    }
    Some(parts)
}

/// Pins the calling thread to `cpu`; a refusal (a CPU taken away since
/// startup) leaves it unpinned and says so.
fn pin_to(cpu: usize, label: &str) {
    let mut set = nix::sched::CpuSet::new();
    let pinned = set
        .set(cpu)
        .and_then(|()| nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set));
    if let Err(e) = pinned {
        tracing::warn!(model = label, cpu, error = %e, "could not pin an inference thread");
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
