"""Each default in exactly one place: the YAML of ``conf/`` or the signature of ssd's callable, never both,
and code never re-defaults a config key (``cfg.get("resume", True)``)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hydra.utils import get_object
from omegaconf import OmegaConf

from ssd.config.signatures import HYDRA_KEYS, schema_of
from ssd.paths import conf_dir
from tests.helpers import REPO


def target_sections(node: Any, where: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if isinstance(node, Mapping):
        if "_target_" in node:
            yield where, node
        for key, value in node.items():
            yield from target_sections(value, f"{where}.{key}")


SECTIONS = [
    (f"{path.relative_to(conf_dir())}:{where}", section)
    for path in sorted(conf_dir().rglob("*.yaml"))
    for where, section in target_sections(OmegaConf.to_container(OmegaConf.load(path), resolve=False), "")
    if str(section["_target_"]).startswith("ssd.")
]


def test_there_are_sections_to_check() -> None:
    assert len(SECTIONS) >= 25


@pytest.mark.parametrize(("where", "section"), SECTIONS, ids=[w for w, _ in SECTIONS])
def test_a_key_the_yaml_sets_has_no_default_in_the_signature(where: str, section: Mapping[str, Any]) -> None:
    params = {p.key: p for p in schema_of(get_object(section["_target_"])).params.values()}
    both = [k for k in section if k not in HYDRA_KEYS and k in params and not params[k].required]
    assert not both, f"{where}: {both} have a default in the YAML and in {section['_target_']}'s signature"


def test_no_code_re_defaults_a_config_key() -> None:
    """``cfg["resume"]``, never ``cfg.get("resume", True)``: conf/config.yaml is where its default lives.
    (``ssd/report/`` reads the recorded results of runs of any age, where a key may be missing.)"""
    run_keys = {k for k in OmegaConf.load(conf_dir() / "config.yaml") if k not in ("defaults", "hydra")}
    keys = "|".join(sorted(run_keys))
    pattern = re.compile(r"""\.get\(\s*["'](""" + keys + r""")["']\s*,""")
    found = [
        f"{path.relative_to(REPO)}:{n}"
        for path in sorted((REPO / "ssd").rglob("*.py"))
        if "report" not in path.parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, found
