"""Settings declared once, as dataclass fields, and turned into a command's Typer options.

A command parameter annotated with a dataclass (``options: BackendOptions``) stands for that dataclass's fields:
:func:`expand_options` gives the command one option per field (its help, flags and default from the field) and
packs them back into one instance when it runs. Every command that shares the group gets the same options, so a
flag is declared in one place. ``Annotated[Settings, OVERRIDES]`` asks for the fields as overrides: every option
defaults to None, and the command receives a dict of the ones given (presets fill in the rest).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any

import typer

OVERRIDES = "overrides"  # the Annotated marker for "only what the user gave"


def option(default: Any = None, help: str | Callable[[], str] = "", *decls: str, cli: bool = True,
           **typer_kwargs: Any) -> Any:
    """A dataclass field that is also a command-line option: its ``help`` (or a function giving it when the
    command is built, for help read from a table that may still grow), optional flag ``decls`` (such as
    ``"--compile/--no-compile"``) and any other ``typer.Option`` argument; ``cli=False`` keeps it off the
    command line (set by code or presets only)."""
    metadata = {"help": help, "decls": decls, "cli": cli, "typer": typer_kwargs}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def cli_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls`` that are command-line options, in declaration order."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]


def field_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return ...  # required: Typer reads Ellipsis as "no default"


def _group(hint: Any) -> tuple[type, bool] | None:
    """(dataclass, overrides?) when a parameter's annotation names an option group, else None."""
    overrides = False
    if typing.get_origin(hint) is Annotated:
        hint, *extras = typing.get_args(hint)
        overrides = OVERRIDES in extras
    return (hint, overrides) if dataclasses.is_dataclass(hint) and isinstance(hint, type) else None


def _parameters(cls: type, overrides: bool) -> list[inspect.Parameter]:
    hints = typing.get_type_hints(cls)
    params = []
    for field in cli_fields(cls):
        kind = hints[field.name]
        default = field_default(field)
        if overrides:
            kind, default = kind | None, None
        text = field.metadata.get("help")
        info = typer.Option(*field.metadata.get("decls", ()), help=(text() if callable(text) else text) or None,
                            **field.metadata.get("typer", {}))
        params.append(inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=Annotated[kind, info]))
    return params


def expand_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` with each option-group parameter replaced by its fields' options (see the module doc)."""
    hints = typing.get_type_hints(command, include_extras=True)
    signature = inspect.signature(command)
    params: list[inspect.Parameter] = []
    groups: dict[str, tuple[type, bool]] = {}
    for name, param in signature.parameters.items():
        group = _group(hints.get(name))
        if group is None:
            params.append(param.replace(annotation=hints.get(name, param.annotation)))
            continue
        groups[name] = group
        params += _parameters(*group)
    names = [p.name for p in params]
    if len(names) != len(set(names)):
        raise TypeError(f"{command.__name__}: an option group repeats a parameter name ({names})")
    # Typer wants the options without defaults first only for positional use; keyword-only keeps any order.
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        for name, (cls, overrides) in groups.items():
            values = {f.name: kwargs.pop(f.name) for f in cli_fields(cls)}
            kwargs[name] = {k: v for k, v in values.items() if v is not None} if overrides else cls(**values)
        return command(**kwargs)

    wrapper.__signature__ = signature.replace(parameters=params)
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper
