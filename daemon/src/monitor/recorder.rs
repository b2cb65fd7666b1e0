//! The process's metrics recorder: one Prometheus recorder for the daemon's
//! own series and one per model name, so that undeploying a model drops all
//! of its series at once ([`forget_model`]). metrics-exporter-prometheus has
//! no way to delete a single series, and a model's series must not outlive
//! it: names are the only unbounded label values dsmild has.
//!
//! A series goes to its model's recorder when it carries a non-empty
//! `model` label; only the daemon's own code picks that label (from a
//! deployment record, never from a request), so the set of recorders
//! follows what is deployed. `/metrics` renders every recorder and merges
//! the families, so the output is one valid exposition.
//!
//! What a scrape shows is current: before rendering, the hooks registered
//! with [`on_scrape`] set the gauges they own (layer memory, from what
//! serves now), and the `process_*` family is read from /proc there and
//! then. Nothing shown waits for a sampler tick.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use super::metrics::LATENCY_BUCKETS;

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

struct Description {
    kind: Kind,
    name: KeyName,
    unit: Option<Unit>,
    text: SharedString,
}

struct Inner {
    daemon: PrometheusRecorder,
    models: RwLock<HashMap<String, PrometheusRecorder>>,
    /// Replayed on each model's recorder when it is made.
    descriptions: Mutex<Vec<Description>>,
    /// Run before each render.
    hooks: Mutex<Vec<ScrapeHook>>,
}

/// Sets gauges from their source just before a scrape renders them.
pub type ScrapeHook = Box<dyn Fn() + Send + Sync>;

/// The installed recorder (a clone is what `metrics` holds globally).
#[derive(Clone)]
pub struct Recorders {
    inner: Arc<Inner>,
}

static INSTALLED: OnceLock<Recorders> = OnceLock::new();

fn build() -> Result<PrometheusRecorder, String> {
    Ok(PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .map_err(|e| e.to_string())?
        .build_recorder())
}

fn describe(recorder: &PrometheusRecorder, d: &Description) {
    match d.kind {
        Kind::Counter => recorder.describe_counter(d.name.clone(), d.unit, d.text.clone()),
        Kind::Gauge => recorder.describe_gauge(d.name.clone(), d.unit, d.text.clone()),
        Kind::Histogram => recorder.describe_histogram(d.name.clone(), d.unit, d.text.clone()),
    }
}

fn model_of(key: &Key) -> Option<&str> {
    key.labels()
        .find(|l| l.key() == "model")
        .map(|l| l.value())
        .filter(|v| !v.is_empty())
}

impl Recorders {
    /// Installs the global recorder. Call once per process.
    pub fn install() -> Result<Recorders, String> {
        let recorders = Recorders {
            inner: Arc::new(Inner {
                daemon: build()?,
                models: RwLock::new(HashMap::new()),
                descriptions: Mutex::new(Vec::new()),
                hooks: Mutex::new(Vec::new()),
            }),
        };
        metrics::set_global_recorder(recorders.clone()).map_err(|e| e.to_string())?;
        let _ = INSTALLED.set(recorders.clone());
        Ok(recorders)
    }

    /// Runs `f` on the recorder `key` belongs to.
    fn route<T>(&self, key: &Key, f: impl FnOnce(&PrometheusRecorder) -> T) -> T {
        let Some(model) = model_of(key) else {
            return f(&self.inner.daemon);
        };
        if let Some(recorder) = self
            .inner
            .models
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(model)
        {
            return f(recorder);
        }
        let mut models = self.inner.models.write().unwrap_or_else(PoisonError::into_inner);
        let recorder = match models.entry(model.to_owned()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                // The builder only fails on invalid buckets, which are
                // constants the daemon's recorder was built with already.
                let recorder = build().unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
                for d in self
                    .inner
                    .descriptions
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                {
                    describe(&recorder, d);
                }
                e.insert(recorder)
            }
        };
        f(recorder)
    }

    fn handles(&self) -> Vec<PrometheusHandle> {
        let models = self.inner.models.read().unwrap_or_else(PoisonError::into_inner);
        std::iter::once(self.inner.daemon.handle())
            .chain(models.values().map(PrometheusRecorder::handle))
            .collect()
    }

    /// The text exposition of every series, one block per metric family,
    /// as of now: the scrape hooks run first and the process figures are
    /// read. Reads /proc: call it from a blocking thread.
    pub fn render(&self) -> String {
        for hook in self.inner.hooks.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            hook();
        }
        let process = super::metrics::process_exposition(&super::process::Figures::read());
        merge(
            self.handles()
                .iter()
                .map(PrometheusHandle::render)
                .chain(std::iter::once(process)),
        )
    }

    /// Drains histogram samples into their buckets (see the exporter's docs).
    pub fn run_upkeep(&self) {
        for handle in self.handles() {
            handle.run_upkeep();
        }
    }

    fn remember(&self, kind: Kind, name: KeyName, unit: Option<Unit>, text: SharedString) {
        let d = Description { kind, name, unit, text };
        describe(&self.inner.daemon, &d);
        for recorder in self
            .inner
            .models
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            describe(recorder, &d);
        }
        self.inner
            .descriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(d);
    }
}

/// Drops every series of `model`: called when it stops being deployed.
/// Handles still held by requests in flight record into the dropped
/// recorder, which nothing renders any more.
pub fn forget_model(model: &str) {
    if let Some(recorders) = INSTALLED.get() {
        recorders
            .inner
            .models
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(model);
    }
}

/// Runs `hook` before every render of `/metrics`, for gauges whose truth
/// lives elsewhere and may change between sampler ticks. Without an
/// installed recorder (no metrics listener) it is dropped: nothing scrapes.
pub fn on_scrape(hook: ScrapeHook) {
    if let Some(recorders) = INSTALLED.get() {
        recorders
            .inner
            .hooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(hook);
    }
}

impl Recorder for Recorders {
    fn describe_counter(&self, name: KeyName, unit: Option<Unit>, text: SharedString) {
        self.remember(Kind::Counter, name, unit, text);
    }

    fn describe_gauge(&self, name: KeyName, unit: Option<Unit>, text: SharedString) {
        self.remember(Kind::Gauge, name, unit, text);
    }

    fn describe_histogram(&self, name: KeyName, unit: Option<Unit>, text: SharedString) {
        self.remember(Kind::Histogram, name, unit, text);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.route(key, |r| r.register_counter(key, metadata))
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.route(key, |r| r.register_gauge(key, metadata))
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.route(key, |r| r.register_histogram(key, metadata))
    }
}

/// Several expositions as one: each family's `# HELP`/`# TYPE` lines once,
/// then its samples from every input. The exporter ends each family's block
/// with an empty line.
fn merge(renders: impl Iterator<Item = String>) -> String {
    struct Family {
        header: Vec<String>,
        samples: Vec<String>,
    }
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for text in renders {
        for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
            let mut header = Vec::new();
            let mut samples = Vec::new();
            let mut name = None;
            for line in block.lines() {
                if let Some(rest) = line.strip_prefix("# TYPE ") {
                    name = rest.split(' ').next().map(str::to_owned);
                    header.push(line.to_owned());
                } else if line.starts_with('#') {
                    header.push(line.to_owned());
                } else if !line.is_empty() {
                    samples.push(line.to_owned());
                }
            }
            let Some(name) = name else { continue };
            let family = families.entry(name).or_insert_with(|| Family {
                header,
                samples: Vec::new(),
            });
            family.samples.extend(samples);
        }
    }
    let mut out = String::new();
    for family in families.values() {
        for line in family.header.iter().chain(&family.samples) {
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::merge;

    #[test]
    fn families_from_several_expositions_are_merged_with_one_header() {
        let a = "# HELP x_total X.\n# TYPE x_total counter\nx_total{model=\"a\"} 1\n\n# TYPE y gauge\ny 2\n\n";
        let b = "# HELP x_total X.\n# TYPE x_total counter\nx_total{model=\"b\"} 3\n\n";
        let merged = merge([a.to_owned(), b.to_owned()].into_iter());
        assert_eq!(
            merged,
            "# HELP x_total X.\n# TYPE x_total counter\nx_total{model=\"a\"} 1\nx_total{model=\"b\"} 3\n\n\
             # TYPE y gauge\ny 2\n\n"
        );
    }
}
