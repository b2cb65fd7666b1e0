//! A closed-loop KServe v2 gRPC load generator, for the serving benchmark
//! where Triton's `perf_analyzer` cannot run (PyPI's wheel needs a newer
//! glibc than Debian 12's). Like perf_analyzer's concurrency mode: each of C
//! callers sends one ModelInfer, waits for the answer and sends the next, on
//! its own HTTP/2 connection, with the same random FP32 input every time
//! (raw_input_contents). It speaks only the standard protocol, so it drives
//! dsmild, Triton and MLServer alike; being native and asynchronous, it costs
//! the machine far less than a Python client, so the server is what is
//! measured.
//!
//!     loadgen (--url http://HOST:PORT | --unix SOCKET) --model NAME
//!         --input NAME:D0,D1,... [--input ...] [--concurrency 1,4,16,64]
//!         [--seconds 5] [--warmup 20] [--threads 1]
//!     loadgen (--url ... | --unix ...) --rpc live [--concurrency ...] [...]
//!
//! `--rpc live` sends ServerLive instead: an RPC with nothing to decode and
//! nothing to run, so its latency is the floor that this client, HTTP/2 and
//! the machine's wake-ups put under every ModelInfer.
//!
//! Prints one JSON object per concurrency level: requests, infer/s, p50,
//! p90, p99 in milliseconds, and errors (with the first error's message).

use std::sync::Arc;
use std::time::{Duration, Instant};

use dsmil_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use dsmil_proto::inference::model_infer_request::InferInputTensor;
use dsmil_proto::inference::{ModelInferRequest, ServerLiveRequest};
use tonic::transport::{Channel, Endpoint, Uri};

/// Where the server listens.
#[derive(Clone)]
enum Target {
    Url(String),
    Unix(String),
}

/// An endpoint with receive windows large enough for an image tensor in one
/// flight, as gRPC's C-core clients (perf_analyzer, tritonclient) reach by
/// probing the bandwidth-delay product; h2's default 64 KiB would make every
/// large answer wait for window updates.
fn endpoint(uri: String) -> anyhow::Result<Endpoint> {
    Ok(Endpoint::from_shared(uri)?
        .tcp_nodelay(true)
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(16 << 20))
}

async fn connect(target: &Target) -> anyhow::Result<GrpcInferenceServiceClient<Channel>> {
    let channel = match target {
        Target::Url(url) => endpoint(url.clone())?.connect().await?,
        Target::Unix(path) => {
            let path = path.clone();
            endpoint("http://localhost".into())?
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                    }
                }))
                .await?
        }
    };
    Ok(GrpcInferenceServiceClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX))
}

/// The request every call sends: each input filled with values in [0, 1).
fn request(model: &str, inputs: &[(String, Vec<i64>)]) -> ModelInferRequest {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32
    };
    ModelInferRequest {
        model_name: model.to_owned(),
        inputs: inputs
            .iter()
            .map(|(name, shape)| InferInputTensor {
                name: name.clone(),
                datatype: "FP32".into(),
                shape: shape.clone(),
                ..Default::default()
            })
            .collect(),
        raw_input_contents: inputs
            .iter()
            .map(|(_, shape)| {
                let n: i64 = shape.iter().product();
                (0..n).flat_map(|_| next().to_le_bytes()).collect()
            })
            .collect(),
        ..Default::default()
    }
}

/// What each call sends.
enum Call {
    Infer(ModelInferRequest),
    Live,
}

impl Call {
    async fn send(&self, client: &mut GrpcInferenceServiceClient<Channel>) -> Result<(), tonic::Status> {
        match self {
            // A clone shares the tensors' bytes (they are `Bytes`).
            Call::Infer(req) => client.model_infer(req.clone()).await.map(drop),
            Call::Live => client.server_live(ServerLiveRequest {}).await.map(drop),
        }
    }
}

/// One level: `concurrency` callers for `seconds` after `warmup` calls each.
async fn level(
    target: &Target,
    req: Arc<Call>,
    concurrency: usize,
    seconds: f64,
    warmup: usize,
) -> anyhow::Result<serde_json::Value> {
    let mut clients = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        clients.push(connect(target).await?);
    }
    for client in &mut clients {
        for _ in 0..warmup {
            req.send(client).await?;
        }
    }
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let callers: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let req = Arc::clone(&req);
            tokio::spawn(async move {
                let (mut latencies, mut errors, mut first_error) = (Vec::new(), 0u64, None);
                while Instant::now() < until {
                    let sent = Instant::now();
                    match req.send(&mut client).await {
                        Ok(()) => latencies.push(sent.elapsed()),
                        Err(status) => {
                            errors += 1;
                            first_error.get_or_insert_with(|| status.message().to_owned());
                        }
                    }
                }
                (latencies, errors, first_error)
            })
        })
        .collect();
    let (mut latencies, mut errors, mut first_error) = (Vec::new(), 0, None);
    for caller in callers {
        let (l, e, f) = caller.await?;
        latencies.extend(l);
        errors += e;
        first_error = first_error.or(f);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |q: f64| -> f64 {
        match latencies.len() {
            0 => f64::NAN,
            n => latencies[((n as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e3,
        }
    };
    Ok(serde_json::json!({
        "concurrency": concurrency,
        "requests": latencies.len(),
        "infer_per_s": latencies.len() as f64 / elapsed,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "errors": errors,
        "first_error": first_error,
    }))
}

fn parse_input(spec: &str) -> anyhow::Result<(String, Vec<i64>)> {
    let (name, dims) = spec
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("--input {spec}: expected NAME:D0,D1,..."))?;
    let shape = dims
        .split(',')
        .map(|d| d.trim().parse())
        .collect::<Result<Vec<i64>, _>>()?;
    Ok((name.to_owned(), shape))
}

fn main() -> anyhow::Result<()> {
    // The same allocator settings as dsmild's: each call's 0.6 MB request
    // clone, encode buffer and decoded answer would otherwise be mapped,
    // faulted in and zeroed afresh, which cost this client more CPU per call
    // than the server spent moving the same bytes.
    dsmild::monitor::process::configure_allocator();
    let threads = std::env::args()
        .skip_while(|a| a != "--threads")
        .nth(1)
        .map_or(Ok(1), |n| n.parse::<usize>())?;
    // One thread by default: at low concurrency a multi-threaded runtime
    // adds its own cross-thread wakeups to every measured call.
    let runtime = match threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread().enable_all().build()?,
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()?,
    };
    runtime.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut target, mut model, mut inputs, mut live) = (None, None, Vec::new(), false);
    let (mut levels, mut seconds, mut warmup) = (vec![1, 4, 16, 64], 5.0, 20);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow::anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => target = Some(Target::Url(value()?)),
            "--unix" => target = Some(Target::Unix(value()?)),
            "--model" => model = Some(value()?),
            "--input" => inputs.push(parse_input(&value()?)?),
            "--concurrency" => levels = value()?.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--seconds" => seconds = value()?.parse()?,
            "--warmup" => warmup = value()?.parse()?,
            "--threads" => drop(value()?), // read by main
            "--rpc" => match value()?.as_str() {
                "infer" => live = false,
                "live" => live = true,
                other => anyhow::bail!("--rpc {other}: expected infer or live"),
            },

            other => anyhow::bail!("unknown argument {other}; see the file's header for usage"),
        }
    }
    let Some(target) = target else {
        anyhow::bail!("usage: loadgen (--url URL | --unix SOCKET) (--model NAME --input NAME:DIMS [...] | --rpc live)");
    };
    let req = if live {
        Arc::new(Call::Live)
    } else {
        let Some(model) = model else {
            anyhow::bail!("--model NAME is needed (or --rpc live)");
        };
        anyhow::ensure!(!inputs.is_empty(), "at least one --input NAME:D0,D1,...");
        Arc::new(Call::Infer(request(&model, &inputs)))
    };
    for c in levels {
        println!("{}", level(&target, Arc::clone(&req), c, seconds, warmup).await?);
    }
    Ok(())
}
