"""The installable command: `ssd`, `ssd-report`, `ssd-bench`, Hydra's tab completion, and a wheel
that carries the config tree (conf/ stays at the top of the checkout)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from ssd.paths import conf_dir
from tests.helpers import REPO

BIN = Path(sys.executable).parent


def _script(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: the entry points are installed by `make install` (pip install -e .)")
    return path


def test_a_checkout_uses_its_top_level_conf() -> None:
    assert conf_dir() == REPO / "conf"


def test_ssd_command_completes_overrides(tmp_path: Path) -> None:
    """Hydra's bash completion: `ssd strat<TAB>` offers the strategy group (not 'Error parsing override')."""
    env = {**os.environ, "COMP_LINE": "ssd strat", "COMP_POINT": "9"}
    proc = subprocess.run(
        [_script("ssd"), "-sc", "query=bash"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "strategy=" in proc.stdout.split(), proc.stdout
    env["COMP_LINE"], env["COMP_POINT"] = "ssd strategy=self", "17"
    proc = subprocess.run(
        [_script("ssd"), "-sc", "query=bash"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "strategy=self_distill" in proc.stdout.split(), proc.stdout


def test_report_and_bench_commands_answer_help(tmp_path: Path) -> None:
    for name, words in (("ssd-report", "folders"), ("ssd-bench", "usage")):
        proc = subprocess.run(
            [_script(name), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0 and words in proc.stdout.lower(), (name, proc.stdout, proc.stderr[-1000:])


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_runs_from_another_folder(tmp_path: Path) -> None:
    """Build a wheel from a copy of the checkout, install it (no deps: torch & co. come from this
    venv's site-packages through a .pth file) and run `ssd` where no conf/ is near."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("ssd", "conf"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "local"))
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", dist, src],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    (wheel,) = dist.glob("ssd-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=300)
    (site,) = venv.glob("lib/python*/site-packages")
    (site / "_project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # after the venv's own
    python = venv / "bin" / "python"
    install = (
        subprocess.run(  # the fresh venv's python runs pip (found through the .pth): its scripts are its own
            [python, "-m", "pip", "install", "--no-deps", "--no-compile", wheel],
            capture_output=True,
            text=True,
            timeout=600,
        )
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    ssd = venv / "bin" / "ssd"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    where = subprocess.run(
        [python, "-c", "import ssd, ssd.paths; print(ssd.__file__); print(ssd.paths.conf_dir())"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert where.returncode == 0, where.stderr[-2000:]
    package, conf = where.stdout.split()
    assert (
        Path(package).is_relative_to(site) and Path(conf) == site / "ssd" / "conf"
    )  # the wheel's, not the checkout's
    assert (Path(conf) / "strategy" / "self_distill.yaml").is_file()

    job = subprocess.run(
        [ssd, "--cfg", "job"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
    )
    assert job.returncode == 0, job.stderr[-2000:]
    assert "strategy:" in job.stdout and "name: vanilla" in job.stdout
    helped = subprocess.run(
        [ssd, "--help"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
    )
    assert helped.returncode == 0 and "strategy: " in helped.stdout, helped.stderr[-2000:]
    assert not (elsewhere / "outputs").exists()  # --cfg and --help run no job
