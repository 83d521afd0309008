"""The README's commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    test_cmds = [b.strip() for b in _bash_blocks(readme) if "pytest" in b]
    assert test_cmds, "README has no test command"
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for block in test_cmds:  # the main suite and the vLLM environment's tests
        for line in block.splitlines():  # every line of the README's block, verbatim
            assert line in ci, line


def test_readme_main_job_installs_the_same_way():
    readme = (ROOT / "README.md").read_text()
    blocks = [b.strip() for b in _bash_blocks(readme)]
    main_job = blocks[0]
    assert (
        "agentmeta " in main_job
        and "constraints/cpu.txt" in main_job
        and "requirements-nodeps.txt" in main_job
    )
