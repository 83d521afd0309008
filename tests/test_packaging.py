"""The built wheel carries archive/, prompts/ and evals/ and runs outside the checkout."""

from __future__ import annotations

import site
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installs_and_runs(tmp_path: Path):
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(dist.glob("agentmeta-*.whl"))
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())  # the web UI's templates and script ship too
    assert {"agentmeta/ui/templates/parts.html", "agentmeta/ui/templates/style.css", "agentmeta/ui/static/live.js"} <= names
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    target = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", target, str(wheel)],
        check=True,
        capture_output=True,
    )
    # dependencies come from this environment, appended after the wheel's own copy
    Path(target, "zz_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    code = (
        "import agentmeta, pathlib; from agentmeta._paths import data_dir;"
        "print(agentmeta.__file__); [print(data_dir(n)) for n in ('archive','prompts','evals')]"
    )
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert all(line.startswith(target) for line in lines), lines
    assert all("_data" in line for line in lines[1:])
    cli = subprocess.run([str(py), "-m", "agentmeta", "models"], capture_output=True, text=True, cwd=tmp_path)
    assert cli.returncode == 0 and "smollm2" in cli.stdout, cli.stderr
