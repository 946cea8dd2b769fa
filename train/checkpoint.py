"""Checkpoints as safetensors: the weights a model ships with, and the full state a run resumes from."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from stylecast.runtime.artifacts import FORMAT_KEY, require, safetensors_metadata, tool_versions
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.images import atomic_write
from stylecast.train.model import ArchConfig, TransformerNet

MODEL_FORMAT = "checkpoint"
STATE_FORMAT = "train-state"


@dataclass
class LoadedModel:
    model: TransformerNet
    meta: dict[str, str]
    path: Path


WEIGHT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def weights_dtype(name: str) -> torch.dtype:
    """The dtype a model file stores its weights in; checked when a run starts, not after hours of training."""
    if name not in WEIGHT_DTYPES:
        raise StylecastError(f"--model-weights {name}: choose {' or '.join(WEIGHT_DTYPES)}")
    return WEIGHT_DTYPES[name]


def save_model(path: Path, model: TransformerNet, meta: dict[str, str], weights: str = "fp32") -> None:
    """The shippable checkpoint: weights plus the metadata export and the runtime check.

    ``weights="fp16"`` stores them at half the size (four styles must fit the repository); loading widens them back
    to fp32, and the style nets' outputs then move by at most one grey level (docs: Training, "Model files")."""
    dtype = weights_dtype(weights)
    tensors = {k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).contiguous()
               for k, v in model.state_dict().items()}
    if not all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point()):
        raise StylecastError(f"{path}: weights outside the {weights} range (or not finite); keep them with "
                             "--model-weights fp32")
    full = {FORMAT_KEY: MODEL_FORMAT, "arch": model.config.to_json(), "precision": "fp32",
            "versions": tool_versions("torch", "safetensors"), **meta, "weights_dtype": weights}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=full))


def read_metadata(path: Path) -> dict[str, str]:
    """A checkpoint's metadata, with the hint a missing checkpoint needs."""
    if not Path(path).is_file():
        raise StylecastError(f"{path}: no such checkpoint; train one with `stylecast train` or check the path")
    return safetensors_metadata(path)


def load_model(path: Path) -> LoadedModel:
    meta = read_metadata(path)
    require(meta, MODEL_FORMAT, path)
    try:
        model = TransformerNet(ArchConfig.from_json(meta["arch"]))
        model.load_state_dict(load_file(str(path)))
    except (ValueError, RuntimeError, KeyError) as exc:
        raise StylecastError(f"{path}: weights do not match its architecture metadata ({exc})") from exc
    return LoadedModel(model.eval(), meta, Path(path))


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], str]:
    state = optimizer.state_dict()
    tensors = {}
    for index, slots in state["state"].items():
        for name, value in slots.items():
            tensors[f"optim.{index}.{name}"] = torch.as_tensor(value).clone().contiguous()  # channels_last moments
    return tensors, json.dumps(state["param_groups"])


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], groups: str) -> dict:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": json.loads(groups)}


def save_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               step: int, meta: dict[str, str]) -> None:
    """Everything needed to continue a run bit-for-bit: weights, Adam moments, step, RNG."""
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    optim_tensors, groups = _flatten_optimizer(optimizer)
    tensors.update(optim_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    full = {FORMAT_KEY: STATE_FORMAT, "step": str(step), "param_groups": groups, **meta}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=full))


def load_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               expect: dict[str, str]) -> int:
    """Restore a run; refuse one whose style, architecture or hyperparameters differ."""
    meta = read_metadata(path)
    require(meta, STATE_FORMAT, path, keys=("step",))
    for key, value in expect.items():
        if meta.get(key) != value:
            raise StylecastError(f"{path}: cannot resume, its {key} differs from this run's "
                                 f"({meta.get(key)!r} vs {value!r}); use another --run-dir or the same settings")
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    optimizer.load_state_dict(_unflatten_optimizer(
        {k: v for k, v in tensors.items() if k.startswith("optim.")}, meta["param_groups"]))
    torch.set_rng_state(tensors["rng.torch"])
    return int(meta["step"])


def snapshot_path(run_dir: Path, step: int) -> Path:
    """Where a run keeps its model at ``step`` (``--snapshot-every``): the points of its quality curve."""
    return Path(run_dir) / "snapshots" / f"step-{step:07d}.safetensors"


def snapshots(run_dir: Path) -> list[Path]:
    """A run's snapshots, oldest first."""
    return sorted((Path(run_dir) / "snapshots").glob("step-*.safetensors"))
