"""The models of the serving benchmark (bench/transport.py), shared by the
load generator and the Triton and MLServer launchers, which run in venvs of
their own: standard library only here.

MODELS maps a name to (input, output, shape of one request, batchable):
`batchable` models have a dynamic first dimension, so a server may merge
requests along it (dsmild's, Triton's and MLServer's dynamic batching);
`convnet` is written with a fixed batch of 1, so no server batches it.
`output` is the name Triton and MLServer give the model's first output
(the ONNX name for `ocr_cls`, "save_infer_model/scale_0.tmp_1", is not a
valid Triton tensor name); dsmild answers with the ONNX names.

    write_models(DIR, PYTHON)   writes DIR/{mlp,convnet,ocr_cls}.onnx
"""

import hashlib
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MODELS = {
    # bench/gen_mlp.py 64,256,256,10: the MLP, 64→256→256→10 (MatMul+Relu
    # layers); a 256-byte request, a 40-byte answer.
    "mlp": ("x", "y", (1, 64), True),
    # bench/gen_convnet.py: four 3×3 convs on 1×3×224×224; 602,112 bytes in and out.
    "convnet": ("image", "out", (1, 3, 224, 224), False),
    # A real, trained third-party model: PaddleOCR's text-orientation
    # classifier (ch_ppocr_mobile_v2.0_cls_infer.onnx from the PyPI wheel
    # rapidocr-onnxruntime==1.4.4), one 48×192 text line per request.
    "ocr_cls": ("x", "probs", (1, 3, 48, 192), True),
}

OCR_CLS_SHA256 = "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c"
OCR_WHEEL = "rapidocr_onnxruntime-1.4.4-py3-none-any.whl"
OCR_INNER = "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ocr_cls(dest: Path) -> None:
    """Copies models/third_party/ocr_cls.onnx (scripts/fetch-models.sh) to
    `dest`; without it, extracts the file from the wheel, found in
    .cache/wheels or /tmp/wheels, else downloaded with pip (--no-deps)."""
    have = ROOT / "models" / "third_party" / "ocr_cls.onnx"
    if have.is_file() and _sha(have) == OCR_CLS_SHA256:
        shutil.copyfile(have, dest)
        return
    wheel = next((d / OCR_WHEEL for d in (ROOT / ".cache" / "wheels", Path("/tmp/wheels"))
                  if (d / OCR_WHEEL).is_file()), None)
    if wheel is None:
        tmp = Path(tempfile.mkdtemp(prefix="dsmil-wheel-"))
        pip = ROOT / ".venv" / "bin" / "pip"
        subprocess.run([str(pip) if pip.exists() else "pip3", "download", "--quiet", "--no-deps",
                        "--only-binary=:all:", "rapidocr-onnxruntime==1.4.4", "-d", str(tmp)], check=True)
        wheel = tmp / OCR_WHEEL
    with zipfile.ZipFile(wheel) as z, z.open(OCR_INNER) as src, open(dest, "wb") as dst:
        shutil.copyfileobj(src, dst)
    if _sha(dest) != OCR_CLS_SHA256:
        raise SystemExit(f"{OCR_INNER} in {wheel}: sha256 differs from the pinned {OCR_CLS_SHA256}")


def write_models(out: Path, python: str, names=tuple(MODELS)) -> None:
    """The ONNX files, into `out`; `python` needs onnx (the generators)."""
    if "mlp" in names:
        subprocess.run([python, ROOT / "bench" / "gen_mlp.py", out / "mlp.onnx", "64,256,256,10"], check=True)
    if "convnet" in names:
        subprocess.run([python, ROOT / "bench" / "gen_convnet.py", out / "convnet.onnx"], check=True)
    if "ocr_cls" in names:
        ocr_cls(out / "ocr_cls.onnx")


def free_port() -> int:
    """A TCP port the OS has free on 127.0.0.1 (for a launcher's server)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launcher_args():
    """The command line both server launchers (transport_triton.py,
    transport_mlserver.py) take: MODEL_DIR PORT_FILE and the serving knobs
    bench/transport.py sets alike for each server."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("port_file", type=Path)
    ap.add_argument("--instances", type=int, default=1)
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--queue-delay-us", type=int, default=0)
    return ap.parse_args()
