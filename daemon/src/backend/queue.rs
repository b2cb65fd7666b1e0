//! The queue between a deployment's callers and its worker threads: bounded,
//! closable, and waking idle workers most-recently-idle first.
//!
//! Why not a channel behind a mutex: with that, idle workers take turns (each
//! waits for the mutex, then for the channel), so at low load every request
//! runs on the instance that has been idle longest, whose session memory is
//! cold, and each request also wakes the next waiting worker just to park it
//! on the channel. Here one push wakes at most one worker, the one that went
//! idle last: at concurrency 1 a single instance serves every request, warm
//! (measured in docs/benchmarks.md). Every worker has its own condition
//! variable so that the push decides who wakes.
//!
//! It holds jobs only; what a job is and how a batch is formed live in
//! `pool`. A pusher never waits for room: a full or closed queue refuses at
//! once.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// Why a push was refused; the job comes back.
pub enum Refused<T> {
    Full(T),
    Closed(T),
}

pub struct JobQueue<T> {
    state: Mutex<State<T>>,
    /// One per worker, indexed by worker number.
    wakers: Vec<Condvar>,
    capacity: usize,
}

struct State<T> {
    jobs: VecDeque<T>,
    /// Workers waiting for a job, the most recently idle last.
    idle: Vec<usize>,
    /// A worker gathering a batch: arrivals go to it, not to idle workers.
    gatherer: Option<usize>,
    closed: bool,
}

impl<T> JobQueue<T> {
    pub fn new(workers: usize, capacity: usize) -> JobQueue<T> {
        JobQueue {
            state: Mutex::new(State {
                jobs: VecDeque::with_capacity(capacity.min(1024)),
                idle: Vec::with_capacity(workers),
                gatherer: None,
                closed: false,
            }),
            wakers: (0..workers).map(|_| Condvar::new()).collect(),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing runs user code under this lock, so a poisoned lock only
        // means a panic elsewhere while it was held; the state is whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `job` and wakes the worker that should take it.
    pub fn push(&self, job: T) -> Result<(), Refused<T>> {
        let wake = {
            let mut state = self.lock();
            if state.closed {
                return Err(Refused::Closed(job));
            }
            if state.jobs.len() >= self.capacity {
                return Err(Refused::Full(job));
            }
            state.jobs.push_back(job);
            match state.gatherer {
                Some(gatherer) => Some(gatherer),
                None => state.idle.pop(),
            }
        };
        // Woken after the lock is released, so the worker does not wake
        // only to wait for it.
        if let Some(worker) = wake {
            self.wakers[worker].notify_one();
        }
        Ok(())
    }

    /// Refuses further pushes; workers take what is queued, then get None.
    pub fn close(&self) {
        self.lock().closed = true;
        for waker in &self.wakers {
            waker.notify_all();
        }
    }

    /// The most jobs the queue holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Worker `me`'s next job, waiting for one; None once the queue is
    /// closed and empty. When `gathers(&job)`, `me` becomes the gatherer of
    /// that job's batch in the same step, so that no other worker takes the
    /// jobs queued behind it first.
    pub fn take(&self, me: usize, gathers: impl Fn(&T) -> bool) -> Option<(T, Option<Gathering<'_, T>>)> {
        let mut state = self.lock();
        loop {
            // While another worker gathers a batch, queued jobs are its.
            if state.gatherer.is_none() {
                if let Some(job) = state.jobs.pop_front() {
                    state.idle.retain(|&w| w != me);
                    let gathering = gathers(&job).then(|| {
                        state.gatherer = Some(me);
                        Gathering { queue: self, me }
                    });
                    return Some((job, gathering));
                }
                if state.closed {
                    state.idle.retain(|&w| w != me);
                    return None;
                }
            }
            if !state.idle.contains(&me) {
                state.idle.push(me);
            }
            state = self.wakers[me].wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// A worker's hold on the queue while it forms a batch, until it drops:
/// arriving jobs wake that worker, and no other worker takes queued jobs.
pub struct Gathering<'a, T> {
    queue: &'a JobQueue<T>,
    me: usize,
}

impl<T> Gathering<'_, T> {
    /// The next queued job, waiting until `until` for one to arrive (not at
    /// all when None or past); None when none came or the queue is closed
    /// and empty.
    pub fn next(&mut self, until: Option<Instant>) -> Option<T> {
        let mut state = self.queue.lock();
        loop {
            if let Some(job) = state.jobs.pop_front() {
                return Some(job);
            }
            if state.closed {
                return None;
            }
            let left = until?.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())?;
            state = self.queue.wakers[self.me]
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl<T> Drop for Gathering<'_, T> {
    fn drop(&mut self) {
        let wake: Vec<usize> = {
            let mut state = self.queue.lock();
            state.gatherer = None;
            // Jobs that arrived while the batch formed and did not join it
            // go to idle workers now, one each.
            let n = state.jobs.len().min(state.idle.len());
            let from = state.idle.len() - n;
            state.idle.drain(from..).collect()
        };
        for worker in wake {
            self.queue.wakers[worker].notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::mpsc::channel;
    use std::time::Duration;

    const LONG: Duration = Duration::from_secs(10);

    /// Worker `me`'s next job, not gathering.
    fn take<T>(queue: &JobQueue<T>, me: usize) -> Option<T> {
        queue.take(me, |_| false).map(|(job, _)| job)
    }

    /// Worker 0 takes job 0, pushed here, and gathers its batch. Call it
    /// before other workers start, or one of them may take job 0.
    fn gather_first(queue: &JobQueue<u32>) -> Gathering<'_, u32> {
        queue.push(0).ok().unwrap();
        let (job, gathering) = queue.take(0, |_| true).expect("job 0");
        assert_eq!(job, 0);
        gathering.expect("worker 0 gathers")
    }

    /// Waits until `workers` are parked idle, in any order.
    fn wait_idle<T>(queue: &JobQueue<T>, workers: usize) -> Vec<usize> {
        let until = Instant::now() + LONG;
        loop {
            let idle = queue.lock().idle.clone();
            if idle.len() == workers {
                return idle;
            }
            assert!(Instant::now() < until, "workers never went idle: {idle:?}");
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_full_queue_and_a_closed_queue_refuse_and_give_the_job_back() {
        let queue = JobQueue::new(1, 2);
        assert!(queue.push(1).is_ok());
        assert!(queue.push(2).is_ok());
        assert!(matches!(queue.push(3), Err(Refused::Full(3))));
        queue.close();
        assert!(matches!(queue.push(4), Err(Refused::Closed(4))));
        // What was queued before the close is still taken, in order.
        assert_eq!(take(&queue, 0), Some(1));
        assert_eq!(take(&queue, 0), Some(2));
        assert_eq!(take(&queue, 0), None);
    }

    #[test]
    fn the_worker_idle_last_takes_the_next_job() {
        let queue = Arc::new(JobQueue::new(3, 8));
        let (done, taken) = channel();
        let mut workers = Vec::new();
        for me in 0..3 {
            let queue = Arc::clone(&queue);
            let done = done.clone();
            workers.push(std::thread::spawn(move || {
                while let Some(job) = take(&queue, me) {
                    done.send((me, job)).unwrap();
                }
            }));
        }
        let idle = wait_idle(&queue, 3);
        let last = *idle.last().unwrap();
        // One job at a time: each is taken by the worker that went idle
        // last, which after its job is the same worker again.
        for job in 0..20 {
            queue.push(job).ok().unwrap();
            assert_eq!(taken.recv_timeout(LONG).unwrap(), (last, job));
            wait_idle(&queue, 3);
        }
        queue.close();
        for w in workers {
            w.join().unwrap();
        }
    }

    #[test]
    fn jobs_pushed_while_a_worker_gathers_go_to_it_and_leftovers_to_an_idle_worker() {
        let queue = Arc::new(JobQueue::new(2, 8));
        let (done, taken) = channel();
        let mut gathering = gather_first(&queue);
        let helper = {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || {
                while let Some(job) = take(&queue, 1) {
                    done.send(job).unwrap();
                }
            })
        };
        wait_idle(&queue, 1);
        let pusher = {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || queue.push(7).ok().unwrap())
        };
        // The gatherer is woken by the arrival; the idle helper is not.
        assert_eq!(gathering.next(Some(Instant::now() + LONG)), Some(7));
        pusher.join().unwrap();
        assert_eq!(gathering.next(None), None);
        queue.push(8).ok().unwrap();
        assert!(
            taken.try_recv().is_err(),
            "an idle worker took a job during the gathering"
        );
        // The job that arrived during the gathering goes to the helper.
        drop(gathering);
        assert_eq!(taken.recv_timeout(LONG).unwrap(), 8);
        queue.close();
        helper.join().unwrap();
    }

    #[test]
    fn jobs_left_by_a_gathering_wake_one_idle_worker_each() {
        let queue = Arc::new(JobQueue::new(3, 8));
        let gathering = gather_first(&queue);
        let (done, taken) = channel();
        let (release, gate) = channel::<()>();
        let gate = Arc::new(std::sync::Mutex::new(gate));
        let helpers: Vec<_> = (1..3)
            .map(|me| {
                let (queue, done, gate) = (Arc::clone(&queue), done.clone(), Arc::clone(&gate));
                std::thread::spawn(move || {
                    while let Some(job) = take(&queue, me) {
                        done.send((me, job)).unwrap();
                        // Busy until released: the same worker cannot also
                        // take the other job.
                        let _ = gate.lock().unwrap().recv();
                    }
                })
            })
            .collect();
        wait_idle(&queue, 2);
        queue.push(1).ok().unwrap();
        queue.push(2).ok().unwrap();
        drop(gathering);
        let mut workers: Vec<usize> = (0..2)
            .map(|_| taken.recv_timeout(LONG).expect("both jobs taken").0)
            .collect();
        workers.sort();
        assert_eq!(workers, vec![1, 2]);
        drop(release);
        queue.close();
        for h in helpers {
            h.join().unwrap();
        }
    }

    #[test]
    fn a_gathering_wait_ends_at_its_deadline() {
        let queue = JobQueue::new(1, 1);
        let mut gathering = gather_first(&queue);
        let start = Instant::now();
        assert_eq!(gathering.next(Some(start + Duration::from_millis(20))), None);
        assert!(start.elapsed() >= Duration::from_millis(20));
    }
}
