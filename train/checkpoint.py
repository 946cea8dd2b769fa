"""Checkpoints as safetensors: the weights a model ships with, and the full state a run resumes from."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from stylecast.runtime.artifacts import FORMAT_KEY, require, safetensors_metadata, tool_versions
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.images import atomic_write
from stylecast.runtime.styles_catalog import check_names
from stylecast.train.model import ArchConfig, ConditionalInstanceNorm, TransformerNet

MODEL_FORMAT = "checkpoint"
STATE_FORMAT = "train-state"


@dataclass
class LoadedModel:
    model: TransformerNet
    meta: dict[str, str]
    path: Path

    @property
    def styles(self) -> list[str]:
        """The style of each row of the net's style vector (a single-style net's one style)."""
        return style_names(self.meta, self.model.config, self.path)


def style_names(meta: dict[str, str], arch: ArchConfig, path: Path) -> list[str]:
    """A checkpoint's style names in row order: its ``styles`` metadata (a JSON list, one name per row of an
    N-style net), or the ``style`` of a single-style one; a list that does not fit the net is refused."""
    if "styles" not in meta and arch.styles == 1:
        return [meta.get("style", Path(path).stem)]
    try:
        names = json.loads(meta.get("styles", "null"))
    except ValueError:
        names = None
    if not isinstance(names, list) or len(names) != arch.styles:
        raise StylecastError(f"{path}: its styles metadata ({meta.get('styles')!r}) does not name the net's "
                             f"{arch.styles} style(s); re-create it with stylecast")
    return check_names(names, str(path))


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
    style_names(meta, model.config, path)  # a multi-style net is useless without the names of its rows
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
    style_names(meta, model.config, path)
    return LoadedModel(model.eval(), meta, Path(path))


def _norms(net: TransformerNet) -> list[str]:
    """The module names of a net's InstanceNorms with weights (affine or conditional): the same names in a net of
    any style count."""
    return [name for name, module in net.named_modules() if isinstance(module, ConditionalInstanceNorm)
            or isinstance(module, nn.InstanceNorm2d) and module.affine]


def _with_norms(net: TransformerNet, styles: int, rows: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> TransformerNet:
    """A net of ``styles`` styles with ``net``'s convs and, for each norm, the (scale, shift) ``rows`` given."""
    out = TransformerNet(replace(net.config, styles=styles))
    norms = set(rows)
    state = {k: v.detach().clone() for k, v in net.state_dict().items() if k.rpartition(".")[0] not in norms}
    for name, (scale, shift) in rows.items():
        if styles == 1:
            state[f"{name}.weight"], state[f"{name}.bias"] = scale.reshape(-1), shift.reshape(-1)
        else:
            state[f"{name}.scale"], state[f"{name}.shift"] = scale, shift
    out.load_state_dict(state)  # strict: every tensor of the new net is accounted for
    return out.train(net.training)


def widen_to_styles(single: TransformerNet, n: int) -> TransformerNet:
    """An ``n``-style net with ``single``'s convs and its affine scale and shift in every row: where a joint run
    starts from a shipped single-style net."""
    if single.config.styles != 1 or n < 2:
        raise ValueError(f"widen_to_styles turns a single-style net into one of 2 or more styles, not "
                         f"{single.config.styles} into {n}")
    modules = dict(single.named_modules())
    return _with_norms(single, n, {name: (modules[name].weight.detach().expand(n, -1).clone(),
                                          modules[name].bias.detach().expand(n, -1).clone())
                                   for name in _norms(single)})


def collapse_styles(net: TransformerNet, weights: torch.Tensor) -> TransformerNet:
    """The single-style net of a multi-style ``net`` at the style vector ``weights`` [N]: its convs, and each norm's
    rows blended into one affine InstanceNorm (the same outputs as ``net`` fed ``weights``)."""
    if weights.shape != (net.config.styles,) or net.config.styles == 1:
        raise ValueError(f"collapse_styles takes a multi-style net and one weight per style, not "
                         f"{net.config.styles} style(s) and weights of shape {tuple(weights.shape)}")
    modules = dict(net.named_modules())
    weights = weights.to(torch.float32)
    return _with_norms(net, 1, {name: (weights @ modules[name].scale.detach(), weights @ modules[name].shift.detach())
                                for name in _norms(net)})


def append_style(net: TransformerNet, single: TransformerNet) -> TransformerNet:
    """``net`` with one style more: every tensor of ``net`` copied unchanged, and a last row holding the affine
    scale and shift of ``single`` (a net of the same convs, trained for the new style)."""
    if replace(single.config, styles=net.config.styles) != net.config or single.config.styles != 1:
        raise ValueError(f"append_style takes a single-style net of the same convs, not {single.config.to_json()}")
    modules, own = dict(net.named_modules()), dict(single.named_modules())
    rows = {}
    for name in _norms(net):
        scale, shift = modules[name].scale.detach(), modules[name].shift.detach()
        # ``single`` may still be on the training device
        rows[name] = (torch.cat([scale, own[name].weight.detach()[None].to(scale)]),
                      torch.cat([shift, own[name].bias.detach()[None].to(shift)]))
    return _with_norms(net, net.config.styles + 1, rows)


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
