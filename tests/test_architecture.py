"""docs/ARCHITECTURE.md is a map of the code: every file, folder and name it points at exists."""

from __future__ import annotations

import importlib
import re

import pytest

from tests.helpers import REPO

DOC = REPO / "docs" / "ARCHITECTURE.md"
TEXT = DOC.read_text()
# `ssd/stages.py`, `conf/strategy/`, `experiments/cpu_fidelity.sh`, `tests/...`: repository paths
PATHS = sorted(set(re.findall(r"`((?:ssd|conf|experiments|tests|docs|tools)/[\w./*-]*)`", TEXT)))
# `ssd.stages.stage_key`: importable dotted names (a module, or a module and an attribute)
NAMES = sorted(set(re.findall(r"`(ssd(?:\.\w+)+)`", TEXT)))


def test_the_map_names_paths_and_code() -> None:
    assert len(PATHS) >= 20 and len(NAMES) >= 10


@pytest.mark.parametrize("path", PATHS)
def test_every_path_it_names_exists(path: str) -> None:
    matches = list(REPO.glob(path)) if "*" in path else [REPO / path]
    assert matches and all(p.exists() for p in matches), (
        f"docs/ARCHITECTURE.md names {path}, which does not exist"
    )


@pytest.mark.parametrize("name", NAMES)
def test_every_dotted_name_it_names_imports(name: str) -> None:
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):  # the longest importable module, then attributes below it
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            assert hasattr(obj, attr), f"docs/ARCHITECTURE.md names {name}: {attr} is not in {obj}"
            obj = getattr(obj, attr)
        return
    pytest.fail(f"docs/ARCHITECTURE.md names {name}, which does not import")
