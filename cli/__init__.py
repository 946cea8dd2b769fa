"""The `stylecast` command: the top layer. It only registers each package's commands, and imports a
command's module when that command runs (or when --help lists it), so `stylecast --help` and
`stylecast stylize` never import torch."""

from __future__ import annotations

import importlib
import sys
import traceback

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

from stylecast.runtime.errors import StylecastError

# name -> "module:attribute" (a function becomes a command; a Typer app becomes a command group).
COMMANDS = {
    "train": "stylecast.train.cli:train",
    "weights": "stylecast.train.cli:weights_app",
    "distill": "stylecast.compress.cli:distill",
    "prune": "stylecast.compress.cli:prune",
    "compress": "stylecast.compress.cli:compress",
    "optimize": "stylecast.train.gatys.cli:optimize",
    "export": "stylecast.export.cli:export",
    "check-trt": "stylecast.export.cli:check_trt",
    "build-engine": "stylecast.export.cli:build_engine",
    "stylize": "stylecast.runtime.cli:stylize",
    "info": "stylecast.runtime.cli:info",
    "serve": "stylecast.serve.cli:serve",
    "bench": "stylecast.benchmarks.cli:bench",
    "evaluate": "stylecast.benchmarks.quality.cli:evaluate",
    "quality": "stylecast.benchmarks.quality.cli:quality",
    "quality-reference": "stylecast.benchmarks.quality.cli:quality_reference",
    "quality-curve": "stylecast.benchmarks.quality.cli:quality_curve",
    "quality-heldout": "stylecast.benchmarks.quality.cli:quality_heldout",
    "recipe-ab": "stylecast.benchmarks.quality.cli:recipe_ab",
}


class LazyGroup(TyperGroup):
    """A click group whose commands are loaded from ``COMMANDS`` on first use."""

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: typer.Context, name: str) -> TyperCommand | TyperGroup | None:
        if name not in COMMANDS:
            return None
        module, attribute = COMMANDS[name].split(":")
        target = getattr(importlib.import_module(module), attribute)
        if isinstance(target, typer.Typer):
            return typer.main.get_group(target)
        single = typer.Typer()
        single.command(name)(target)
        return typer.main.get_command(single)


app = typer.Typer(
    name="stylecast",
    cls=LazyGroup,
    help="Fast neural style transfer: train in PyTorch, export to ONNX and GPU engines, stylize anywhere.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
_state = {"debug": False}


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    _state["debug"] = debug


def main() -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit code."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        app(standalone_mode=True)
    except StylecastError as exc:
        if _state["debug"] or "--debug" in sys.argv:
            traceback.print_exc()
        err.print(f"error: {exc}", markup=False, style="bold red")
        sys.exit(exc.exit_code)
