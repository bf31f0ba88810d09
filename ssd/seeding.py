"""Which seed a stage trains from: its own, derived from the run seed and what the stage is.

A teacher, its student and a denoiser of one run must not share random streams by
accident: with one seed for all, a self-distillation student would start from its
teacher's initial weights and replay the teacher's batches, crops and noise step for step.
So every stage trains from ``stage_seed(cfg)``, a hash of (run seed, stage identity) where
the identity says what is trained (``strategy.name``, plus ``strategy.generations`` for
born-again chains), not the role it plays. Hence a teacher of seed s is one cache entry
shared by every student of seed s, and the ``clean`` classifier is the same network whether
it serves STL, denoise or joint.

``stage_seeds: shared`` (config) restores one seed for every stage, as an ablation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

STAGE_SEED_MODES = ("independent", "shared")


def stage_identity(strategy_cfg: Mapping[str, Any]) -> str:
    """What a stage trains, independent of the role it plays for a later stage."""
    identity = str(strategy_cfg["name"])
    generations = strategy_cfg.get("generations")
    if generations not in (None, 1):
        identity += f"/gen{int(generations)}"
    return identity


def stage_seed(cfg: Mapping[str, Any]) -> int:
    """The seed every random stream of this stage derives from (weights, order, crops, noise)."""
    seed = int(cfg["seed"])
    if cfg.get("stage_seeds", "independent") == "shared":
        return seed
    digest = hashlib.sha256(f"ssd-stage:{seed}:{stage_identity(cfg['strategy'])}".encode()).digest()
    return int.from_bytes(digest[:4], "little")  # < 2**32: fits every generator and numpy
