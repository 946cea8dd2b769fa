"""A machine's fingerprint: what decides whether two speed measurements can be compared.

Same-run ratios cancel load but not the instruction set: bf16 autocast is 1.5x faster than fp32
on one x86 CPU and 150x slower on another. Latency baselines and cached measurements are therefore
keyed by this fingerprint, never by one machine's figures applied to the next.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
from pathlib import Path

from stylecast.runtime.artifacts import package_version
from stylecast.runtime.errors import import_optional

# CPU features that change which precision or kernel is fastest (flag names as Linux spells them).
RANKING_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
                    "amx_tile", "amx_bf16", "amx_int8")
# The fingerprint's keys that must agree for two machines to be of one class. Library versions are
# recorded beside them but do not split classes: a new onnxruntime that is slower is what a gate is for.
CLASS_KEYS = ("vendor", "family", "model", "features", "cores")
VERSION_KEYS = ("torch", "onnxruntime")


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


PROC_CPUINFO = Path("/proc/cpuinfo")


def proc_cpu_info(text: str) -> dict | None:
    """The first CPU of a Linux x86 /proc/cpuinfo in py-cpuinfo's keys; None where a field is missing or blank
    (ARM, or a VM that blanks the model name), so the caller asks py-cpuinfo instead."""
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    wanted = ("vendor_id", "model name", "cpu family", "model", "flags")
    if not all(fields.get(k) for k in wanted) or not (fields["cpu family"].isdigit() and fields["model"].isdigit()):
        return None
    return {"vendor_id_raw": fields["vendor_id"], "brand_raw": fields["model name"],
            "family": int(fields["cpu family"]), "model": int(fields["model"]), "flags": fields["flags"].split()}


@functools.lru_cache(maxsize=1)
def cpu_info() -> dict:
    """/proc/cpuinfo where it names the CPU fully (instant), else py-cpuinfo's view (cpuid-based, so it sees
    through VMs that blank the model name; about 1.2 s, as it measures the clock in a subprocess)."""
    try:
        found = proc_cpu_info(PROC_CPUINFO.read_text())
    except OSError:  # not Linux
        found = None
    if found:
        return found
    cpuinfo = import_optional("cpuinfo", "the machine fingerprint needs py-cpuinfo: pip install 'stylecast[train]'")
    return cpuinfo.get_cpu_info()


def _minor(version: str | None) -> str | None:
    """``2.13.0+cpu`` -> ``2.13``: patch releases do not move kernels enough to need a new baseline."""
    return ".".join(version.split("+")[0].split(".")[:2]) if version else None


def fingerprint() -> dict:
    """Vendor, family/model, ranking features, usable cores, and the torch/onnxruntime minor versions."""
    info = cpu_info()
    flags = {f.replace("_", "") for f in info.get("flags", [])}
    return {
        "vendor": info.get("vendor_id_raw") or platform.machine(),
        "cpu": info.get("brand_raw") or platform.processor() or "unknown CPU",
        "family": info.get("family"),
        "model": info.get("model"),
        "features": [f for f in RANKING_FEATURES if f.replace("_", "") in flags],
        "cores": usable_cores(),
        "torch": _minor(package_version("torch")),
        "onnxruntime": _minor(package_version("onnxruntime") or package_version("onnxruntime-gpu")),
    }


def class_id(fp: dict) -> str:
    """A short stable hash of the class keys: file names and cache keys."""
    keys = {k: fp.get(k) for k in CLASS_KEYS}
    return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:8]


def describe_class(fp: dict) -> str:
    features = ",".join(fp.get("features") or []) or "no AVX2"
    return (f"{fp.get('cpu')} ({fp.get('vendor')} family {fp.get('family')} model {fp.get('model')}; "
            f"{features}; {fp.get('cores')} cores)")


def mismatches(recorded: dict, current: dict, keys: tuple[str, ...] = CLASS_KEYS) -> list[str]:
    """The ``keys`` on which ``current`` differs from ``recorded``; a key ``recorded`` lacks (None) is not compared."""
    return [f"{key} {recorded[key]} (here {current.get(key)})" for key in keys
            if recorded.get(key) is not None and recorded[key] != current.get(key)]
