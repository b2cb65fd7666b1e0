"""Calibration and validation data for the real third-party models of
scripts/fetch-models.sh (issue 13): rendered text for the PP-OCR models,
synthetic speech-like audio for Silero VAD, preprocessed exactly as the
packages that ship the models do it, so that calibration sees the ranges
deployment will see.

    python bench/real_data.py MODELS_DIR OUT_DIR [--quick]

writes OUT_DIR/<model>/calib.npz and val.npz (keys: the model's input
names, in dsmil's format, daemon/src/compress/data.rs: rows of the batch
axis, or whole inputs stacked on a new leading axis), plus, for the
benchmark only, val_meta.npz (OCR: the rendered strings; VAD: the raw
validation audio, so each model can be streamed with its own state).
Calibration and validation use different seeds (different texts, fonts,
layouts, voices and noise).

Preprocessing, from rapidocr_onnxruntime 1.4.4's source (the images are
BGR, as cv2 loads them there; PIL's bilinear resize stands in for
cv2.resize, which this venv does not have):
  det  ch_ppocr_det/utils.py DetPreProcess: resize so both sides are
       multiples of 32, (x/255 - mean)/std with mean = std = 0.5 (the
       package's config.yaml: 1.4.4 uses 0.5, not ImageNet's 0.485/0.229),
       CHW. Pages are rendered 480x640, which the "max" limit type (960)
       keeps as is; the default "min 736" would make every page 736x~992,
       too slow for ORT's calibrator, which holds every activation of
       every sample in memory.
  rec  ch_ppocr_rec/text_recognize.py: height 48, width ceil(48*w/h)
       capped at 320, (x/255 - 0.5)/0.5, zero-padded to 3x48x320.
  cls  ch_ppocr_cls/text_cls.py: the same at 3x48x192; half the lines
       turned 180 degrees (the classifier's two labels, '0' and '180').
  vad  silero_vad/utils_vad.py OnnxWrapper: 512 new samples at 16 kHz
       with the previous 64 as context (input [1, 576]), the recurrent
       state [2, 1, 128] carried from chunk to chunk (here: FP32's own
       state along each synthetic stream), sr = 16000 (int64 scalar).
"""

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONTS = sorted(Path("/usr/share/fonts/truetype/dejavu").glob("DejaVu*.ttf"))
FONTS = [f for f in FONTS if "MathTeX" not in f.name] or [None]

WORDS = (
    "total invoice date amount paid cash change receipt order number item qty price tax "
    "subtotal balance due customer account street road avenue city phone email www "
    "the quick brown fox jumps over lazy dog model version serial batch lot expiry "
    "warning caution keep dry store below open here made in ref no page of report "
    "station platform exit entrance north south east west floor room level"
).split()


def font(rng, size):
    path = FONTS[rng.integers(len(FONTS))]
    return ImageFont.truetype(str(path), size) if path else ImageFont.load_default(size)


def phrase(rng, max_chars):
    """A line as printed matter has it: words, numbers, prices, dates."""
    parts = []
    while True:
        kind = rng.random()
        if kind < 0.6:
            w = WORDS[rng.integers(len(WORDS))]
            w = w.upper() if rng.random() < 0.2 else (w.capitalize() if rng.random() < 0.3 else w)
        elif kind < 0.75:
            w = f"{rng.integers(0, 10000)}"
        elif kind < 0.85:
            w = f"{rng.integers(0, 1000)}.{rng.integers(0, 100):02d}"
        elif kind < 0.92:
            w = f"{rng.integers(1, 29):02d}/{rng.integers(1, 13):02d}/20{rng.integers(10, 30)}"
        else:
            w = rng.choice(["-", ":", "#", "$", "%", "&", "(A)", "No."])
        if parts and len(" ".join(parts + [w])) > max_chars:
            break
        parts.append(w)
        if len(parts) > 1 and rng.random() < 0.15:
            break
    return " ".join(parts)


def colours(rng):
    """(background, ink): mostly dark on light, sometimes light on dark."""
    light = tuple(int(v) for v in rng.integers(170, 256, 3))
    dark = tuple(int(v) for v in rng.integers(0, 90, 3))
    return (dark, light) if rng.random() < 0.12 else (light, dark)


def degrade(rng, img):
    """Camera-ish: blur, a gradient of light, sensor noise."""
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.2))))
    a = np.asarray(img).astype(np.float32)
    h, w = a.shape[:2]
    gx = np.linspace(0, 1, w)[None, :, None] * rng.uniform(-40, 40)
    gy = np.linspace(0, 1, h)[:, None, None] * rng.uniform(-40, 40)
    a = a + gx + gy + rng.normal(0, rng.uniform(1, 8), a.shape)
    return np.clip(a, 0, 255).astype(np.uint8)


def text_line(rng):
    """One cropped text line (RGB uint8 HxWx3) and its text, as the detector
    would crop it: a little margin around the glyphs."""
    size = int(rng.integers(20, 44))
    f = font(rng, size)
    text = phrase(rng, int(rng.integers(4, 22)))
    bg, ink = colours(rng)
    x0, y0, x1, y1 = f.getbbox(text)
    mx, my = int(rng.integers(2, 10)), int(rng.integers(2, 8))
    img = Image.new("RGB", (x1 - x0 + 2 * mx, y1 - y0 + 2 * my), bg)
    ImageDraw.Draw(img).text((mx - x0, my - y0), text, font=f, fill=ink)
    if rng.random() < 0.3:
        img = img.rotate(float(rng.uniform(-2, 2)), resample=Image.BILINEAR, expand=False, fillcolor=bg)
    return degrade(rng, img), text


def line_input(rgb, height, width):
    """rapidocr's rec/cls resize_norm_img on a BGR crop."""
    h, w = rgb.shape[:2]
    resized_w = min(width, int(math.ceil(height * w / h)))
    bgr = np.asarray(Image.fromarray(rgb).resize((resized_w, height), Image.BILINEAR))[:, :, ::-1]
    x = bgr.astype(np.float32).transpose(2, 0, 1) / 255
    x = (x - 0.5) / 0.5
    out = np.zeros((3, height, width), np.float32)
    out[:, :, :resized_w] = x
    return out


def page(rng, height=480, width=640):
    """A document-like page: lines of text of mixed sizes, a few boxes."""
    bg, ink = colours(rng)
    img = Image.new("RGB", (width, height), bg)
    draw = ImageDraw.Draw(img)
    y = int(rng.integers(5, 40))
    while y < height - 20:
        size = int(rng.integers(12, 40))
        f = font(rng, size)
        x = int(rng.integers(5, width // 3))
        text = phrase(rng, int(rng.integers(5, 40)))
        colour = ink if rng.random() < 0.8 else tuple(int(v) for v in rng.integers(0, 256, 3))
        draw.text((x, y), text, font=f, fill=colour)
        if rng.random() < 0.1:
            draw.rectangle([x - 3, y - 3, x + int(rng.integers(50, 300)), y + size + 4], outline=colour)
        y += int(size * rng.uniform(1.2, 2.5))
        if rng.random() < 0.1:
            y += int(rng.integers(20, 80))
    return degrade(rng, img)


def page_input(rgb):
    """rapidocr's DetPreProcess on a BGR page whose sides are multiples of 32."""
    h, w = rgb.shape[:2]
    assert h % 32 == 0 and w % 32 == 0
    x = rgb[:, :, ::-1].astype(np.float32) / 255
    x = (x - 0.5) / 0.5
    return x.transpose(2, 0, 1)


def ocr_det(rng, n):
    return {"x": np.stack([page_input(page(rng)) for _ in range(n)])}, {}


def ocr_rec(rng, n):
    lines = [text_line(rng) for _ in range(n)]
    return {"x": np.stack([line_input(img, 48, 320) for img, _ in lines])}, {"text": np.array([t for _, t in lines])}


def ocr_cls(rng, n):
    xs, labels = [], []
    for _ in range(n):
        img, _ = text_line(rng)
        flip = rng.random() < 0.5
        if flip:
            img = img[::-1, ::-1].copy()
        xs.append(line_input(img, 48, 192))
        labels.append(int(flip))
    return {"x": np.stack(xs)}, {"orientation": np.array(labels, np.int64)}


# --- Silero VAD -------------------------------------------------------------

SR = 16000
CHUNK = 512
CONTEXT = 64


def voiced(rng, seconds):
    """A vowel-ish stretch: a gliding f0 with jitter, harmonics shaped by two
    or three formants, syllable-rate amplitude modulation."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f0 = rng.uniform(85, 260) * (1 + 0.12 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t + rng.uniform(0, 6)))
    f0 *= 1 + 0.01 * rng.standard_normal(n).cumsum() / np.sqrt(n)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    formants = sorted(rng.uniform([250, 800, 2000], [900, 2200, 3200]))
    sig = np.zeros(n)
    for k in range(1, 40):
        fk = k * f0.mean()
        if fk > 7000:
            break
        gain = sum(np.exp(-(((fk - F) / 120) ** 2)) for F in formants) + 0.05 / k
        sig += gain * np.sin(k * phase)
    syllables = 0.55 + 0.45 * np.sin(2 * np.pi * rng.uniform(3, 6) * t + rng.uniform(0, 6)) ** 2
    ramp = np.minimum(1, np.minimum(t, t[::-1]) / 0.03)
    return sig / (np.abs(sig).max() + 1e-9) * syllables * ramp


def fricative(rng, seconds):
    n = int(seconds * SR)
    noise = rng.standard_normal(n)
    noise = np.diff(noise, prepend=0)  # tilt towards high frequencies
    return 0.3 * noise / (np.abs(noise).max() + 1e-9) * np.hanning(n)


def stream(rng, seconds):
    """Speech-like bursts (voiced + fricatives) between pauses, over
    background noise (hum, pink-ish noise) at a random level."""
    n = int(seconds * SR)
    out = np.zeros(n)
    pos = int(rng.uniform(0.1, 0.6) * SR)
    while pos < n:
        burst = []
        for _ in range(int(rng.integers(2, 8))):
            burst.append(voiced(rng, rng.uniform(0.08, 0.3)))
            if rng.random() < 0.4:
                burst.append(fricative(rng, rng.uniform(0.04, 0.12)))
        seg = np.concatenate(burst) * rng.uniform(0.1, 0.6)
        seg = seg[: n - pos]
        out[pos : pos + len(seg)] += seg
        pos += len(seg) + int(rng.uniform(0.2, 1.2) * SR)
    white = rng.standard_normal(n)
    pink = np.convolve(white, np.ones(8) / 8, mode="same")
    hum = np.sin(2 * np.pi * rng.choice([50, 60]) * np.arange(n) / SR)
    level = 10 ** rng.uniform(-3.3, -1.7)
    out += level * (pink / pink.std() + 0.5 * hum * rng.random())
    return np.clip(out, -1, 1).astype(np.float32)


def vad_chunks(audio):
    """The model's inputs along a stream, as OnnxWrapper builds them: the
    64 samples of context before each 512-sample chunk."""
    padded = np.concatenate([np.zeros(CONTEXT, np.float32), audio])
    count = len(audio) // CHUNK
    return np.stack([padded[i * CHUNK : i * CHUNK + CHUNK + CONTEXT] for i in range(count)])


def vad_states(session, chunks):
    """FP32's own state before each chunk (and its speech probabilities)."""
    state = np.zeros((2, 1, 128), np.float32)
    states, probs = [], []
    for c in chunks:
        states.append(state)
        out, state = session.run(None, {"input": c[None], "state": state, "sr": np.array(SR, np.int64)})
        probs.append(float(out[0, 0]))
    return np.stack(states), np.array(probs)


def vad(model, rng, streams, seconds, keep):
    """Chunks of `streams` synthetic streams, each with FP32's state; keeps
    `keep` of them at random (all when None)."""
    s = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    audios = [stream(rng, seconds) for _ in range(streams)]
    inputs, states, probs = [], [], []
    for a in audios:
        c = vad_chunks(a)
        st, p = vad_states(s, c)
        inputs.append(c)
        states.append(st)
        probs.append(p)
    inputs, states, probs = np.concatenate(inputs), np.concatenate(states), np.concatenate(probs)
    idx = np.arange(len(inputs)) if keep is None else np.sort(rng.choice(len(inputs), keep, replace=False))
    arrays = {
        "input": inputs[idx],  # rows of the batch axis: [N, 576]
        "state": states[idx],  # whole inputs stacked: [N, 2, 1, 128]
        "sr": np.full(len(idx), SR, np.int64),  # scalars stacked: [N]
    }
    return arrays, {"audio": np.stack(audios), "fp32_speech": probs[idx]}


MODELS = {
    # name: (calib builder, val builder), each (rng, quick) -> (arrays, meta)
    "ocr_det": (lambda r, q: ocr_det(r, 8 if q else 16), lambda r, q: ocr_det(r, 8 if q else 16)),
    "ocr_rec": (lambda r, q: ocr_rec(r, 32), lambda r, q: ocr_rec(r, 50 if q else 200)),
    "ocr_cls": (lambda r, q: ocr_cls(r, 32 if q else 128), lambda r, q: ocr_cls(r, 100 if q else 400)),
    "silero_vad": (None, None),
    "silero_vad_16k_op15": (None, None),
}
SEEDS = {"calib": 1013, "val": 2027}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    parser.add_argument("--only", nargs="*", help="model names (default: all)")
    args = parser.parse_args()
    for i, (name, builders) in enumerate(MODELS.items()):
        if args.only and name not in args.only:
            continue
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        for split in ("calib", "val"):
            rng = np.random.default_rng(SEEDS[split] + 100 * i)
            if name.startswith("silero"):
                model = args.models / f"{name}.onnx"
                if split == "calib":
                    arrays, meta = vad(model, rng, 6 if args.quick else 16, 4.0, 128 if args.quick else 400)
                else:
                    arrays, meta = vad(model, rng, 4 if args.quick else 10, 4.0, None)
            else:
                arrays, meta = builders[0 if split == "calib" else 1](rng, args.quick)
            np.savez(folder / f"{split}.npz", **arrays)
            if split == "val" and meta:
                np.savez(folder / "val_meta.npz", **meta)
            shapes = ", ".join(f"{k} {list(v.shape)} {v.dtype}" for k, v in arrays.items())
            print(f"{name} {split}: {shapes}", file=sys.stderr)


if __name__ == "__main__":
    main()
