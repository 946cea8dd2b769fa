"""The `stylecast` command. Importing it never imports torch: roles load their code on use."""

from __future__ import annotations

import sys
import traceback

import typer
from rich.console import Console

from stylecast.export.bench.cli import bench
from stylecast.export.cli import export
from stylecast.export.compress_cli import compress
from stylecast.train.cli import train, weights_app
from stylecast.train.compress_cli import distill, prune
from stylecast.train.evaluate_cli import evaluate
from stylecast.train.optimize_cli import optimize

from .engine_cli import build_engine
from .errors import StylecastError
from .stylize_cli import info, stylize

app = typer.Typer(
    name="stylecast",
    help="Fast neural style transfer: train in PyTorch, export to ONNX/TensorRT, stylize anywhere.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
_state = {"debug": False}


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    _state["debug"] = debug


app.command()(train)
app.add_typer(weights_app, name="weights")
app.command()(export)
app.command()(stylize)
app.command()(info)
app.command()(build_engine)
app.command()(distill)
app.command()(prune)
app.command()(compress)
app.command()(bench)
app.command()(optimize)
app.command()(evaluate)


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


if __name__ == "__main__":
    main()
