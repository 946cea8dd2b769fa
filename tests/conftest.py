"""Shared fixtures: tiny committed photos, a random-weight VGG (tests only), a tiny trained model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
# A test that trains, exports or runs the real command is `slow` (minutes in all); the rest are unit tests
# (`make test-fast`, under a minute). Fixtures that train or export make every test using them slow.
SLOW_FIXTURES = {"tiny_checkpoint", "tiny_onnx", "tiny_multi_onnx", "low_precision_export", "clip"}
SLOW_CALLS = ("run_cli(", "subprocess.", "Trainer(", "run_export(", "GatysOptimizer(", "stylize_video(")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    import inspect

    for item in items:
        source = inspect.getsource(item.function) if hasattr(item, "function") else ""
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or any(call in source for call in SLOW_CALLS):
            item.add_marker(pytest.mark.slow)
TINY_ARCH = ["--width", "4", "--res-blocks", "1"]


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real `stylecast` command in a fresh interpreter, as a user runs it."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "stylecast.cli", *args], capture_output=True,
                          text=True, env=full_env, cwd=cwd, timeout=600)


@pytest.fixture(scope="session")
def photos() -> Path:
    return DATA / "photos"


@pytest.fixture(scope="session")
def calibration_photos(tmp_path_factory, photos):
    """Real photo content that is not byte-identical to the parity photos: crops and mirrors of them."""
    from stylecast.benchmarks.gate_calibration import derived_photos

    folder = tmp_path_factory.mktemp("calibration")
    derived_photos(photos, folder)
    return folder


@pytest.fixture(scope="session")
def style_image() -> Path:
    return DATA / "style.jpg"


@pytest.fixture(scope="session")
def tiny_vgg(tmp_path_factory) -> Path:
    """VGG16 convs up to relu4_3 with random weights. Only tests may train against random weights."""
    from stylecast.train.vgg import save_random_loss_net

    return save_random_loss_net(tmp_path_factory.mktemp("vgg") / "vgg16-random.safetensors")


def train_args(photos: Path, style_image: Path, vgg: Path, out: Path, run_dir: Path, steps: int) -> list[str]:
    return ["train", "--style", "tiny", "--data", str(photos), "--style-image", str(style_image),
            "--out", str(out), "--run-dir", str(run_dir), "--steps", str(steps), "--batch", "2",
            "--crop", "32", "--style-size", "48", "--loss-net-weights", str(vgg), "--log-every", "1",
            "--checkpoint-every", "2", "--styles-dir", str(DATA), *TINY_ARCH]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, photos, style_image, tiny_vgg) -> Path:
    root = tmp_path_factory.mktemp("train")
    out = root / "tiny.safetensors"
    result = run_cli(*train_args(photos, style_image, tiny_vgg, out, root / "run", steps=3))
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory, tiny_checkpoint, photos) -> Path:
    out = tmp_path_factory.mktemp("export")
    result = run_cli("export", str(tiny_checkpoint), "--out", str(out), "--parity-images", str(photos))
    assert result.returncode == 0, result.stderr + result.stdout
    return out / "tiny.fp32.onnx"


MULTI_STYLES = ["wave", "starry_night", "candy"]  # the rows of the tiny multi-style net
TINY_SIZES = ((64, 64), (61, 79))  # square, and odd sizes the strided convs must crop back


def save_tiny_net(folder: Path, name: str, styles: int = 1) -> Path:
    """A random-init tiny net (width 4, one residual block) saved without training; a multi-style one holds
    MULTI_STYLES[:styles], with distinct rows per style."""
    import json

    import torch

    from stylecast.train.checkpoint import save_model
    from stylecast.train.model import ArchConfig, TransformerNet

    from .test_multistyle_train import _random_rows

    torch.manual_seed(0)
    net = TransformerNet(ArchConfig(width=4, res_blocks=1, styles=styles))
    head = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():  # a fresh net paints about 0, clamped; this one spans the grey levels, so styles differ
        head.weight.mul_(100.0)
        head.bias.fill_(128.0)
    meta = {"style": name, "steps": "0"}
    if styles > 1:
        net = _random_rows(net)
        meta["styles"] = json.dumps(MULTI_STYLES[:styles])
    folder.mkdir(parents=True, exist_ok=True)
    save_model(folder / f"{name}.safetensors", net, meta)
    return folder / f"{name}.safetensors"


def export_tiny_net(root: Path, name: str, styles: int, photos: Path) -> Path:
    """The fp32 export (with its tiled graphs) of ``save_tiny_net``'s net."""
    from stylecast.export.pipeline import ExportRequest, run_export

    run_export(ExportRequest(save_tiny_net(root / "models", name, styles), root / "out", parity_images=photos,
                             sizes=TINY_SIZES), log=lambda _: None)
    return root / "out" / f"{name}.fp32.onnx"


@pytest.fixture(scope="session")
def tiny_multi_onnx(tmp_path_factory, photos) -> Path:
    """The fp32 export of a tiny untrained net of the three MULTI_STYLES (``trio.fp32.onnx``)."""
    return export_tiny_net(tmp_path_factory.mktemp("multi"), "trio", len(MULTI_STYLES), photos)


# A test on the Ray cluster runs a few jobs of well under a minute each on 2 CPUs: this bounds a hang.
RAY_TEST_SECONDS = 300


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs for one test module, shut down after it. Its GCS address lets a `stylecast`
    child process join it; Ray's token authentication, on for a local cluster, asks such a client for
    RAY_AUTH_MODE=token."""
    ray = pytest.importorskip("ray", reason="the Ray tests need the extra: pip install 'stylecast[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 << 20, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture
def deadline():
    """Fail a test whose Ray job hangs instead of blocking the suite."""
    def expired(*_: object) -> None:
        raise TimeoutError(f"the test took over {RAY_TEST_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(RAY_TEST_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
