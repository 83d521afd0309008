"""The command-line reference as Markdown, from the commands' own help: every command and
subcommand with its usage, text and options. The docs build puts it on the CLI reference page
(mkdocs.yml `hooks:`: a page line `<!-- cli-reference -->` becomes it)."""

from __future__ import annotations

from typing import Any


def _walk(cmd: Any, path: list[str]) -> list[tuple[list[str], Any]]:
    out = [(path, cmd)]
    for name in sorted(getattr(cmd, "commands", {}) or {}):
        sub = cmd.commands[name]
        if not getattr(sub, "hidden", False):
            out += _walk(sub, [*path, name])
    return out


def markdown() -> str:
    """Each command's `--help`, as plain text under a heading of its own."""
    import typer

    from agentmeta.cli import app

    root = typer.main.get_command(app)
    parts = []
    for path, cmd in _walk(root, ["agentmeta"])[1:]:
        ctx = cmd.context_class(cmd, info_name=path[-1], parent=None)
        usage = " ".join([*path, *cmd.collect_usage_pieces(ctx)])
        lines = [f"## `{' '.join(path)}`", "", f"    {usage}", ""]
        if cmd.help:
            lines += [cmd.help.replace("\b\n", "").strip(), ""]
        rows = []
        for param in cmd.params:
            record = param.get_help_record(ctx)
            if record is not None:
                rows.append(f"| `{record[0]}` | {record[1].replace('|', '/').replace(chr(10), ' ')} |")
        if rows:
            lines += ["| option | what it does |", "| --- | --- |", *rows, ""]
        parts.append("\n".join(lines))
    return "\n".join(parts)


def on_page_markdown(markdown_text: str, **_: Any) -> str:
    """MkDocs hook: the line `<!-- cli-reference -->` becomes the reference."""
    marker = "<!-- cli-reference -->"
    return markdown_text.replace(marker, markdown()) if marker in markdown_text else markdown_text
