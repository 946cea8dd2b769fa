"""mkdocs-gen-files: the command-line reference, generated from the `stylecast` Typer app at build time.

It walks the click group that Typer builds from `stylecast.cli.app` (the lazy group imports each command's module
as it is listed) and writes every command and subcommand with its usage, help text, arguments and options, as
`stylecast COMMAND --help` prints them. Typer bundles its own copy of click, so the walk uses the objects' own
methods (`list_commands`, `get_command`, `get_params`, `get_help_record`), not the `click` package.
"""

from __future__ import annotations

import re

import mkdocs_gen_files
import typer

from stylecast.cli import app

PAGE = "reference/cli.md"
# The shell-completion flags the lazy group's one-command wrappers carry: the same on every command, not its own.
SKIPPED = {"install_completion", "show_completion"}


def escape(text: str) -> str:
    """`<style>` in help text is a placeholder, not HTML: escape it outside `code spans`."""
    parts = text.split("`")
    return "`".join(part if i % 2 else part.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                    for i, part in enumerate(parts))


def cell(text: str) -> str:
    """Table-cell safe: one line, placeholders escaped, pipes escaped."""
    return escape(" ".join(text.split())).replace("|", "\\|")


def summary(command) -> str:
    """The first paragraph of a command's help (click's short help cuts at the first full stop, even in
    "et al.")."""
    return cell(raw_help(command).split("\n\n")[0])


def split_help(help_text: str) -> tuple[str, str]:
    """`Output folder.  [default: stylized]` -> (`Output folder.`, `default: stylized`)."""
    found = re.search(r"\s*\[([^\[\]]*(?:default|required|x>=|x<=|x>|x<)[^\[\]]*)\]\s*$", help_text)
    if not found:
        return help_text.strip(), ""
    return help_text[:found.start()].strip(), found.group(1).strip()


def params_table(command, ctx) -> str:
    rows = []
    for param in command.get_params(ctx):
        if param.name in SKIPPED or getattr(param, "hidden", False):
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        declaration, help_text = record
        text, extra = split_help(help_text or "")
        kind = "argument" if type(param).__name__.endswith("Argument") else "option"
        code = " ".join(declaration.split()).replace("|", "\\|")
        rows.append(f"| `{code}` | {kind} | {cell(text)} | {cell(extra)} |")
    if not rows:
        return ""
    return "| name | kind | description | default / required |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"


def raw_help(command) -> str:
    """The command's help (its docstring), with click's `\\b` no-rewrap markers dropped."""
    text = (command.help or "").replace("\b\n", "").replace("\b", "")
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def help_body(command) -> str:
    return escape(raw_help(command))


def anchor(path: list[str]) -> str:
    return "-".join(path[1:]) if len(path) > 1 else "stylecast"


def render(command, ctx, path: list[str], level: int, out: list[str]) -> None:
    name = " ".join(path)
    out.append(f"{'#' * level} `{name}` {{ #{anchor(path)} }}\n")
    body = help_body(command)
    if body:
        out.append(body + "\n")
    out.append(f"```text\n{command.get_usage(ctx).strip()}\n```\n")
    table = params_table(command, ctx)
    if table:
        out.append(table)
    if hasattr(command, "list_commands"):
        names = command.list_commands(ctx)
        subcommands = [(n, command.get_command(ctx, n)) for n in names]
        if level == 1:
            out.append("## Commands\n")
        out.append("| command | what it does |\n|---|---|\n" + "\n".join(
            f"| [`{' '.join([*path, n])}`](#{anchor([*path, n])}) | {summary(sub)} |"
            for n, sub in subcommands) + "\n")
        for n, sub in subcommands:
            render(sub, sub.context_class(sub, info_name=n, parent=ctx), [*path, n], 2 if level == 1 else level + 1,
                   out)


def main() -> None:
    group = typer.main.get_command(app)
    ctx = group.context_class(group, info_name="stylecast")
    out = ["# Command line\n",
           "Every command of `stylecast`, generated from the command-line app itself when this site is built: "
           "the same text as `stylecast COMMAND --help`. Errors are one line naming the file and the fix; put "
           "`--debug` before the command for a traceback. The Make targets that wrap these commands are in the "
           "[pipeline table](../getting-started.md#the-pipeline).\n"]
    body: list[str] = []
    render(group, ctx, ["stylecast"], 1, body)
    # The page's own title is above; the group's heading becomes the top-level options' section.
    body[0] = "## Global options {: #stylecast }\n"
    out.extend(body)
    with mkdocs_gen_files.open(PAGE, "w") as page:
        page.write("\n".join(out))


main()
