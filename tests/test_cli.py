"""``ssd --help``, ``--cfg`` and tab completion answer without importing torch (issue 20 item 1), and
``--help`` is ssd's own (its header, no internal config groups)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import ONE_THREAD, REPO

#: the `ssd` console script (`from ssd.run import main`), then which heavy modules were imported
PROBE = """
import sys
from ssd.run import main
sys.argv = ["ssd", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print("HEAVY:", sorted(m for m in ("torch", "lightning", "torchvision", "wandb") if m in sys.modules))
"""


def ssd_probe(*args: str, script: str = PROBE, **env: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        env={**os.environ, **ONE_THREAD, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def help_text() -> str:
    return ssd_probe("--help")


def test_help_answers_without_importing_torch(help_text: str) -> None:
    assert "== Config groups" in help_text
    assert help_text.strip().endswith("HEAVY: []"), help_text[-500:]


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (("--cfg", "job", "strategy=self_distill"), {}, "name: self_distill"),
        (("-sc", "query=bash"), {"COMP_LINE": "ssd strat"}, "strategy="),
    ],
    ids=["cfg", "completion"],
)
def test_answers_without_importing_torch(args: tuple[str, ...], env: dict[str, str], expected: str) -> None:
    out = ssd_probe(*args, **env)
    assert expected in out
    assert out.strip().endswith("HEAVY: []"), out[-500:]


def test_help_is_ssds_own(help_text: str) -> None:
    out = help_text
    assert out.startswith("ssd: simple self-distillation")
    assert "powered by Hydra" not in out
    groups = out.split("== Config groups")[1].split("== Config (")[0]
    assert "strategy: " in groups and "debug: " in groups
    assert "_shared" not in groups and "hydra" not in groups


def test_the_lazy_names_resolve_to_the_real_ones() -> None:
    import ssd.run
    import ssd.validate

    assert ssd.run.validate.resolve() is ssd.validate.validate
    assert ssd.run.launch.resolve() is sys.modules["ssd.launch"]


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [(("--help",), {}, "strategy: "), (("-sc", "query=bash"), {"COMP_LINE": "ssd strat"}, "strategy=")],
    ids=["help", "completion"],
)
def test_help_and_completion_build_one_config_repository_per_composition(
    args: tuple[str, ...], env: dict[str, str], expected: str
) -> None:
    """Hydra deep-copies a config repository for each group lookup (~600 for --help: 4 s of 5 on a 2-core
    CPU; ~75 for a TAB); ssd shares one per (config, overrides) while they run, and the text stays the same."""
    counting = """
import hydra._internal.config_repository as repos
made = []
init = repos.CachingConfigRepository.__init__
repos.CachingConfigRepository.__init__ = lambda self, *a, **k: made.append(1) or init(self, *a, **k)
""" + PROBE.replace('print("HEAVY:"', 'print("REPOS:", len(made)); print("HEAVY:"')
    out = ssd_probe(*args, script=counting, **env)
    assert expected in out
    made = int(out.split("REPOS:")[1].split()[0])
    assert made <= 3, made  # the listing's and the composition's (was 600+ / 75)


def test_the_shared_repository_is_put_back() -> None:
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    from ssd.run import one_config_repository

    original = ConfigLoaderImpl._parse_overrides_and_create_caching_repo  # noqa: SLF001
    with one_config_repository():
        assert ConfigLoaderImpl._parse_overrides_and_create_caching_repo is not original  # noqa: SLF001
    assert ConfigLoaderImpl._parse_overrides_and_create_caching_repo is original  # noqa: SLF001
