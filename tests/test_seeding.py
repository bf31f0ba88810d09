"""ssd.seeding: one place derives every seed and stream of a run, from (seed, tag, rank, epoch)."""

from __future__ import annotations

import re

import torch

from ssd.seeding import generator, seed_of
from tests.helpers import REPO


def test_streams_differ_by_tag_rank_epoch_and_seed_and_repeat_exactly() -> None:
    base = seed_of(0, "noise", 0, 0)
    assert seed_of(0, "noise", 0, 0) == base and 0 <= base < 2**63
    assert (
        len(
            {
                base,
                seed_of(0, "augment", 0, 0),
                seed_of(0, "noise", 1, 0),
                seed_of(0, "noise", 0, 1),
                seed_of(1, "noise", 0, 0),
            }
        )
        == 5
    )
    a = torch.rand(8, generator=generator(3, "order", 0, 2))
    assert torch.equal(a, torch.rand(8, generator=generator(3, "order", 0, 2)))
    assert generator(0, "noise", device="cpu").device.type == "cpu"


def test_training_streams_are_seeded_only_in_ssd_seeding() -> None:
    """No module of a training run seeds a generator its own way (``seed + epoch``, SeedSequence, ...).

    Outside it: ``ssd.fit`` seeds the global RNGs with the stage seed before the networks are built
    (their initial weights), the synthetic images are a function of ``data.data_seed``, the noise
    contract checks a model on fixed test images, and the report's bootstrap, the benchmark, the
    plain reference loop, the GPU check and the export's check batch are not training runs.
    """
    allowed = {
        "ssd/seeding.py",
        "ssd/fit.py",
        "ssd/data/synthetic.py",
        "ssd/noise/contract.py",
        "ssd/report/stats.py",
        "ssd/plainloop.py",
        "ssd/gpu_check.py",
        "ssd/parity.py",
        "ssd/bench/rows.py",
        "ssd/bench/rawloop.py",
        "ssd/export.py",
    }
    pattern = re.compile(
        r"manual_seed\(|SeedSequence|default_rng\(|seed_everything\(|random\.seed\(|np\.random\.seed\("
    )
    found = sorted(
        str(path.relative_to(REPO))
        for path in (REPO / "ssd").rglob("*.py")
        if pattern.search(path.read_text()) and str(path.relative_to(REPO)) not in allowed
    )
    assert found == [
        "ssd/callbacks.py"
    ]  # EpochSeed: the global RNGs, from seed_of(seed, "global", rank, epoch)
    assert 'seed_of(self.seed, "global"' in (REPO / "ssd" / "callbacks.py").read_text()
