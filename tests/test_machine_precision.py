"""The machine fingerprint, and `--precision auto` decided by a measured probe rather than CPU flags."""

from __future__ import annotations

import json

import pytest
import torch

from stylecast.runtime import machine
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.machine import CLASS_KEYS, RANKING_FEATURES, class_id, fingerprint, mismatches
from stylecast.train import precision

from .conftest import run_cli, train_args

CPU = torch.device("cpu")


def test_fingerprint_names_the_class_and_versions():
    here = fingerprint()
    assert set(CLASS_KEYS) <= set(here) and here["cores"] >= 1 and here["vendor"]
    assert here["torch"].count(".") == 1  # minor version only: a patch release is the same class
    assert set(here["features"]) <= set(RANKING_FEATURES)
    assert class_id(here) == class_id({**here, "torch": "0.1", "onnxruntime": None})  # versions do not split classes
    assert class_id(here) != class_id({**here, "cores": here["cores"] + 1})


def test_proc_cpuinfo_gives_py_cpuinfos_class_in_no_time():
    """The fast path must not move a machine to another class: baselines and caches are keyed on it."""
    if not machine.PROC_CPUINFO.is_file() or machine.proc_cpu_info(machine.PROC_CPUINFO.read_text()) is None:
        pytest.skip("no x86 /proc/cpuinfo naming the CPU here: py-cpuinfo is the only source")
    cpuinfo = pytest.importorskip("cpuinfo")
    fast = machine.proc_cpu_info(machine.PROC_CPUINFO.read_text())
    slow = cpuinfo.get_cpu_info()
    keys = ("vendor_id_raw", "family", "model")
    assert {k: fast[k] for k in keys} == {k: slow[k] for k in keys}
    ranked = lambda flags: {f for f in RANKING_FEATURES if f.replace("_", "") in {g.replace("_", "") for g in flags}}  # noqa: E731
    assert ranked(fast["flags"]) == ranked(slow["flags"])
    assert machine.proc_cpu_info("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: \n") is None
    assert machine.proc_cpu_info("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd\n") is None


def test_mismatches_compare_only_what_was_recorded():
    here = {"vendor": "GenuineIntel", "family": 6, "model": 207, "features": ["avx2"], "cores": 2}
    assert mismatches({**here, "model": None}, here) == []  # a key the baseline never recorded is not compared
    assert mismatches({**here, "features": ["avx2", "avx512_bf16"]}, here) == [
        "features ['avx2', 'avx512_bf16'] (here ['avx2'])"]


def test_explicit_precision_is_taken_as_asked_and_unknown_is_refused():
    assert precision.resolve_precision(CPU, "fp32") == precision.Choice("fp32", "as asked (--precision)")
    with pytest.raises(StylecastError, match="--precision fp8: choose auto"):
        precision.resolve_precision(CPU, "fp8")


def test_probe_measures_both_precisions():
    verdict = precision.probe(CPU)
    assert verdict.candidate == "bf16" and verdict.fp32_ms > 0 and verdict.candidate_ms > 0
    assert verdict.ratio == pytest.approx(verdict.candidate_ms / verdict.fp32_ms, rel=0.01)
    assert verdict.precision == ("bf16" if verdict.ratio < precision.FASTER_BELOW else "fp32")


def _cache_with(tmp_path, monkeypatch, ratio: float) -> None:
    """A cached verdict for this machine, as if the probe had measured ``ratio`` (bf16 time / fp32 time)."""
    monkeypatch.setenv("STYLECAST_CACHE", str(tmp_path))
    entry = {"precision": "bf16" if ratio < precision.FASTER_BELOW else "fp32", "candidate": "bf16", "ratio": ratio,
             "fp32_ms": 100.0, "candidate_ms": 100.0 * ratio, "measured": "2026-01-01", "threads": 2,
             "probe_version": precision.PROBE_VERSION}
    (tmp_path / "precision-probe.json").write_text(json.dumps({precision._cache_key(CPU): entry}))


@pytest.mark.parametrize(("ratio", "chosen"), [(0.6, "bf16"), (1.35, "fp32"), (0.95, "fp32")])
def test_auto_follows_the_measured_verdict(tmp_path, monkeypatch, ratio, chosen):
    _cache_with(tmp_path, monkeypatch, ratio)
    choice = precision.resolve_precision(CPU, "auto")
    assert choice.precision == chosen
    assert f"{1 / ratio:.2f}x the speed of fp32" in choice.reason and "cached probe of 2026-01-01" in choice.reason


def test_probe_verdict_is_cached_per_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLECAST_CACHE", str(tmp_path))
    first = precision.measured_verdict(CPU)
    stored = json.loads((tmp_path / "precision-probe.json").read_text())
    assert list(stored) == [precision._cache_key(CPU)] and stored[precision._cache_key(CPU)]["fingerprint"]
    again = precision.measured_verdict(CPU)
    assert again.cached and again.ratio == first.ratio


def test_train_log_says_which_precision_auto_chose_and_why(tmp_path, monkeypatch, photos, style_image, tiny_vgg):
    """On a machine where bf16 measured slower, `train --precision auto` trains in fp32 and says why."""
    (tmp_path / "cache").mkdir()
    _cache_with(tmp_path / "cache", monkeypatch, 1.35)
    done = run_cli(*train_args(photos, style_image, tiny_vgg, tmp_path / "m.safetensors", tmp_path / "run", 1),
                   "--precision", "auto")
    assert done.returncode == 0, done.stderr
    assert "precision auto -> fp32 on cpu: bf16 autocast ran at 0.74x the speed of fp32" in done.stdout
    from stylecast.runtime.artifacts import read_metadata

    meta = read_metadata(tmp_path / "m.safetensors")
    assert meta["train_precision"] == "fp32" and "0.74x" in meta["train_precision_reason"]
