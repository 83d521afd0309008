"""The README is a short front door; its commands, and the docs' test commands, are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_ci_runs_the_readme_and_docs_test_commands():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    found = {}
    for page in pages:
        for block in _bash_blocks(page.read_text()):
            if "pytest" in block:
                found.setdefault(page.name, []).append(block)
                for line in block.strip().splitlines():  # every line of the block, verbatim
                    assert line.strip() in ci, f"{page.relative_to(ROOT)}: {line}"
    assert "README.md" in found, "README has no test command"
    # the main suite, the llama.cpp provider's tests and the vLLM environment's tests
    assert sum(len(v) for v in found.values()) >= 3, found.keys()


def test_readme_main_job_installs_the_same_way():
    readme = (ROOT / "README.md").read_text()
    blocks = [b.strip() for b in _bash_blocks(readme)]
    main_job = blocks[0]
    assert (
        "agentmeta " in main_job
        and "constraints/cpu.txt" in main_job
        and "requirements-nodeps.txt" in main_job
    )


def test_the_readme_is_a_front_door_whose_links_lead_somewhere():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if not link.startswith("http")]
    assert local, "the README links no docs page"
    for link in local:
        assert (ROOT / link).is_file(), link


def test_every_docs_page_is_in_the_site_navigation():
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def pages(node: object) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, dict):
            return [p for v in node.values() for p in pages(v)]
        if isinstance(node, list):
            return [p for v in node for p in pages(v)]
        return []

    nav = set(pages(config["nav"]))
    docs = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert docs == nav, (docs - nav, nav - docs)
