"""The OmegaConf resolvers ssd's config files use, registered when ``ssd`` is imported.

* ``${ssd.job_folder:...}``: a sweep job's folder name (``ssd.rundir.job_folder_name``);
* ``${ssd.noise_label:${noise}}``: the noise family and its level in a run folder's name
  (``gaussian0.2``, ``poisson10.0``, ``none``), read from the noise class's ``name`` and
  ``level_name`` without building the model;
* ``${ssd.config_groups:}``: the config groups ``ssd --help`` lists (conf/hydra/help/ssd.yaml):
  Hydra's own list without the internal ones (a folder starting with ``_``, e.g. ``_shared``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from omegaconf import OmegaConf

from ssd.rundir import job_folder_name


def noise_label(section: Mapping[str, Any]) -> str:
    """``<family><level>`` of a noise section; ``noise`` when its class cannot be imported (yet: the
    config check reports that)."""
    from hydra.utils import get_class

    try:
        cls = get_class(str(section["_target_"]))
        level = section.get(cls.level_name)
        return f"{cls.name}{'' if level is None else level}"
    except Exception:  # noqa: BLE001 - a folder name must never be what fails
        return "noise"


@functools.cache  # (OmegaConf resolves the help template twice; each listing parses every group)
def config_groups() -> str:
    """``group: option, option`` per line, for every config group a user chooses from: Hydra's list
    (``$APP_CONFIG_GROUPS``, search-path folders included) less ``hydra/`` and ``_``-prefixed groups."""
    from hydra.core.global_hydra import GlobalHydra

    hydra = GlobalHydra.instance().hydra
    assert hydra is not None, "ssd.config_groups is resolved by `ssd --help` only"
    return hydra.format_config_groups(lambda group: not group.split("/")[0].startswith(("hydra", "_")))


OmegaConf.register_new_resolver("ssd.config_groups", config_groups, replace=True)
OmegaConf.register_new_resolver("ssd.job_folder", job_folder_name, replace=True)
OmegaConf.register_new_resolver("ssd.noise_label", noise_label, replace=True)
