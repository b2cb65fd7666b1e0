//! `dsmilctl report --html FILE`: the quantization report as one
//! self-contained page (inline CSS and SVG, no scripts, nothing fetched).

use dsmil_proto::control::QuantizationReport;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One before/after pair as two horizontal bars scaled to the larger value.
fn bars(label: &str, before: f64, after: f64, unit: &str, y: u32) -> String {
    let max = before.max(after).max(f64::MIN_POSITIVE);
    let width = |v: f64| (v / max * 300.0).round();
    format!(
        r##"<text x="0" y="{ty}" class="label">{label}</text>
<rect x="160" y="{y0}" width="{wb}" height="14" class="fp32"/><text x="{tb}" y="{t0}">{before:.3} {unit}</text>
<rect x="160" y="{y1}" width="{wa}" height="14" class="int8"/><text x="{ta}" y="{t1}">{after:.3} {unit}</text>
"##,
        ty = y + 18,
        label = escape(label),
        y0 = y,
        y1 = y + 18,
        t0 = y + 12,
        t1 = y + 30,
        wb = width(before),
        wa = width(after),
        tb = 166.0 + width(before),
        ta = 166.0 + width(after),
    )
}

pub fn render(r: &QuantizationReport) -> String {
    let kib = |b: u64| b as f64 / 1024.0;
    let chart = [
        bars("size", kib(r.size_before), kib(r.size_after), "KiB", 0),
        bars("latency p50", r.fp32_p50_ms, r.int8_p50_ms, "ms", 44),
        bars("latency p95", r.fp32_p95_ms, r.int8_p95_ms, "ms", 88),
        bars(&r.metric, r.fp32, r.int8, "", 132),
    ]
    .concat();
    let layers: String = r
        .layers
        .iter()
        .map(|l| {
            format!(
                "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
                escape(&l.node),
                escape(&l.op),
                escape(&l.precision),
                escape(&l.precision),
                l.macs
            )
        })
        .collect();
    let fallback = if r.fp32_fallback.is_empty() {
        "none (full INT8)".to_owned()
    } else {
        escape(&r.fp32_fallback.join(", "))
    };
    format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{model} v{version}: INT8 quantization report</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 10px; text-align: left; }}
svg text {{ font-size: 12px; }} .label {{ font-weight: bold; }}
.fp32 {{ fill: #8aa9d6; }} .int8 {{ fill: #e39b5b; }}
td.int8 {{ color: #b35c12; }} td.fp32 {{ color: #2f5d9e; }}
</style></head><body>
<h1>{model} version {version}: INT8 quantization</h1>
<p>Method {method}, {activations} activations, {samples} calibration samples; {metric} over {val} validation samples.</p>
<table>
<tr><th></th><th>FP32</th><th>INT8</th><th></th></tr>
<tr><td>size</td><td>{size_before} bytes</td><td>{size_after} bytes</td><td>{ratio}</td></tr>
<tr><td>{metric}</td><td>{fp32:.4}</td><td>{int8:.4}</td><td>retention {retention:.4}</td></tr>
<tr><td>latency p50</td><td>{fp50:.3} ms</td><td>{ip50:.3} ms</td><td></td></tr>
<tr><td>latency p95</td><td>{fp95:.3} ms</td><td>{ip95:.3} ms</td><td></td></tr>
</table>
<p>Mean output cosine similarity {cosine:.5}. MACs in INT8: {share:.1}%. Kept in FP32 by the fallback: {fallback}.</p>
<svg width="560" height="176" role="img" aria-label="FP32 (blue) and INT8 (orange) compared">
{chart}</svg>
<p><svg width="12" height="12"><rect width="12" height="12" class="fp32"/></svg> FP32
<svg width="12" height="12"><rect width="12" height="12" class="int8"/></svg> INT8</p>
<h2>Layers</h2>
<table><tr><th>layer</th><th>op</th><th>precision</th><th>MACs per sample</th></tr>
{layers}</table>
</body></html>
"##,
        model = escape(&r.model),
        version = r.version,
        method = escape(&r.method),
        activations = escape(&r.activations),
        samples = r.calibration_samples,
        metric = escape(&r.metric),
        val = r.validation_samples,
        size_before = r.size_before,
        size_after = r.size_after,
        ratio = crate::views::report::size_change(r.size_before, r.size_after),
        fp32 = r.fp32,
        int8 = r.int8,
        retention = r.retention,
        fp50 = r.fp32_p50_ms,
        ip50 = r.int8_p50_ms,
        fp95 = r.fp32_p95_ms,
        ip95 = r.int8_p95_ms,
        cosine = r.mean_cosine,
        share = r.int8_mac_share * 100.0,
    )
}
