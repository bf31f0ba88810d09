"""Every bad input fails before any data is read or any network is built: exit status 2, one
line naming the key, the value and what is allowed, and a ``status: failed`` result that says so.

Each case goes through ``ssd.run.execute`` (the job exactly as ``python -m ssd.run`` runs it)
with the datamodule, network and training builders replaced by tripwires; a few also through
the real command line.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import torch

import ssd.parts
from ssd import models
from ssd.run import execute
from tests.helpers import TINY, compose_cfg, datamodule, run_cli

#: a synthetic run small enough that nothing here would take long even if it did start
BASE = [
    *TINY,
    "trainer.max_epochs=1",
    "data.train=64",
    "data.test=16",
    "data.val_size=0",
    "data.batch_size=16",
]
#: the same on CIFAR-10 (cases starting "cifar: "; the data is never looked for); "bare: ": no base
CIFAR = [
    *(o for o in TINY if not o.startswith("data=")),
    "data=cifar10",
    "trainer.max_epochs=1",
    "data.batch_size=16",
]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Checkpoint files, good and broken, and a plain file to put folders under."""
    root = tmp_path_factory.mktemp("files")

    def classifier(arch: str, classes: int) -> dict[str, torch.Tensor]:
        state = {f"backbone.{k}": v for k, v in getattr(models, arch)(classes).state_dict().items()}
        return {**state, "mean": torch.zeros(1, 3, 1, 1), "std": torch.ones(1, 3, 1, 1)}

    out = {
        "resnet56": root / "resnet56.pt",
        "resnet20_10": root / "resnet20_10classes.pt",
        "resnet20_4": root / "resnet20_4classes.pt",
        "truncated": root / "truncated.pt",
        "garbage": root / "garbage.pt",
        "empty": root / "empty.pt",
        "no_weights": root / "no_weights.pt",
        "nan": root / "nan.pt",
        "inf_ckpt": root / "inf.ckpt",
        "a_file": root / "a_file",
    }
    torch.save(classifier("resnet56", 4), out["resnet56"])
    torch.save(classifier("resnet20", 10), out["resnet20_10"])
    torch.save(classifier("resnet20", 4), out["resnet20_4"])
    whole = out["resnet20_4"].read_bytes()
    out["truncated"].write_bytes(whole[: len(whole) // 2])
    out["garbage"].write_bytes(b"this is not a checkpoint\n" * 40)
    out["empty"].write_bytes(b"")
    torch.save({"epoch": 3, "note": "no tensors"}, out["no_weights"])
    nan = classifier("resnet20", 4)
    nan["backbone.fc.weight"][0, 0] = float("nan")
    torch.save(nan, out["nan"])
    inf = classifier("resnet20", 4)
    first = next(k for k, v in inf.items() if v.dim() == 4)  # the first convolution
    inf[first].view(-1)[0] = float("inf")
    torch.save({"state_dict": {f"net.{k}": v for k, v in inf.items()}}, out["inf_ckpt"])
    out["a_file"].write_text("a file, not a folder\n")
    return out


GPU = not torch.cuda.is_available()
# (overrides, what the message must name, what it must say is allowed); @name -> files[name]
CASES: list[tuple[str, str, str]] = [
    # data
    ("cifar: data.limit_train=-5", "data.limit_train=-5", "integer > 0"),
    ("cifar: data.limit_train=0", "data.limit_train=0", "integer > 0"),
    ("cifar: data.limit_test=-1", "data.limit_test=-1", "integer > 0"),
    ("cifar: data.limit_test=0", "data.limit_test=0", "integer > 0"),
    ("cifar: data.limit_train=abc", "data.limit_train='abc'", "integer > 0"),
    (
        "cifar: data.limit_train=100 data.batch_size=128",
        "data.batch_size=128",
        "at most the training set: 90",
    ),
    ("data.batch_size=512", "data.batch_size=512", "at most the training set: 64 images"),
    ("+data.limit_train=20 data.batch_size=32", "data.batch_size=32", "at most the training set: 20"),
    ("data.val_size=-0.5", "data.val_size=-0.5", "in [0, 1)"),
    ("data.train=0", "data.train=0", "integer in (0, 1000000]"),
    ("+data.limit_trian=3", "data.limit_trian=3", "did you mean data.limit_train"),
    ("bare: experiment=cpu_quick data=imagefolder", "data.variant='subset'", "~data.variant"),
    ("cifar: data.variant=tiny", "data.variant='tiny'", "auto, full, subset"),
    # optimizer and schedule
    (
        "optim.scheduler._target_=ssd.schedules.cosin",
        "optim.scheduler._target_='ssd.schedules.cosin'",
        "importable",
    ),
    ("optim.optimizer.lr=-0.1", "optim.optimizer.lr=-0.1", "finite number > 0"),
    ("optim.optimizer.lr=0", "optim.optimizer.lr=0", "finite number > 0"),
    ("optim.optimizer.lr=nan", "optim.optimizer.lr=nan", "finite number > 0"),
    ("optim.optimizer.lr=inf", "optim.optimizer.lr=inf", "finite number > 0"),
    ("optim.optimizer.weight_decay=-1", "optim.optimizer.weight_decay=-1", "finite number >= 0"),
    ("optim.optimizer.momentum=1.5", "optim.optimizer.momentum=1.5", "[0, 1]"),
    ("optim.scheduler.warmup_epochs=-1", "optim.scheduler.warmup_epochs=-1", "finite number >= 0"),
    ("optim.scheduler.min_lr_ratio=2", "optim.scheduler.min_lr_ratio=2", "[0, 1]"),
    (
        "optim/scheduler=multistep optim.scheduler.milestones=[0.5,2]",
        "optim.scheduler.milestones=[0.5, 2]",
        "in [0, 1]",
    ),
    ("optim.optimizer._target_=torch.optim.Nope", "optim.optimizer._target_", "importable"),
    ("+optim.optimizer.lamda=1", "optim.optimizer.lamda=1", "no key 'lamda'"),
    ("strategy=joint strategy.optim.optimizer.lr=-1", "strategy.optim.optimizer.lr=-1", "finite number > 0"),
    # unknown keys
    ("+foo=1", "foo=1", "the config has no key 'foo'"),
    ("strategy=self_distill +strategy.lamda=0.1", "strategy.lamda=0.1", "did you mean strategy.lambda"),
    ("+trainer.max_epoch=3", "trainer.max_epoch=3", "did you mean trainer.max_epochs"),
    ("+noise.sigmaa=0.2", "noise.sigmaa=0.2", "did you mean noise.sigma"),
    ("+paths.cach_dir=x", "paths.cach_dir='x'", "did you mean paths.cache_dir"),
    ("strategy=self_distill +strategy.logit_kd.wieght=1", "strategy.logit_kd.wieght=1", "weight"),
    (
        "strategy=self_distill +strategy.teacher.overrides.model.archh=resnet56",
        "model.archh",
        "no key 'archh'",
    ),
    # stages
    (
        "strategy=self_distill strategy.teacher.overrides={model:{_target_:ssd.models.resnet99}}",
        "model._target_='ssd.models.resnet99'",
        "importable",
    ),
    ("strategy=self_distill strategy.teacher.strategy=nope", "strategy.teacher.strategy='nope'", "vanilla"),
    ("strategy=self_distill strategy.teacher.ckpt=/no/such/net.pt", "strategy.teacher.ckpt=", "existing"),
    # checkpoints
    ("init_from=@garbage", "init_from=", "not a readable PyTorch weights file"),
    ("init_from=@truncated", "init_from=", "not a readable PyTorch weights file"),
    ("init_from=@empty", "init_from=", "not a readable PyTorch weights file"),
    ("init_from=@no_weights", "init_from=", "holds no network weights"),
    (
        "init_from=@resnet56",
        "init_from=",
        "it holds a model=resnet56 (4 classes), but this stage's network is the model (ssd.models.resnet20)",
    ),
    ("init_from=@resnet20_10", "init_from=", "for 10 classes, but data=synthetic has 4"),
    (
        "strategy=self_distill strategy.teacher.ckpt=@resnet56",
        "strategy.teacher.ckpt=",
        "holds a model=resnet56 (4 classes)",
    ),
    ("strategy=self_distill strategy.teacher.ckpt=@truncated", "strategy.teacher.ckpt=", "not a readable"),
    (
        "strategy=denoise strategy.denoiser.ckpt=@resnet20_4",
        "strategy.denoiser.ckpt=",
        "network is the denoiser",
    ),
    ("init_from=@nan", "init_from=", "hold NaN or infinite values (backbone.fc.weight)"),
    ("init_from=@inf_ckpt", "init_from=", "hold NaN or infinite values (backbone."),
    ("strategy=self_distill strategy.teacher.ckpt=@nan", "strategy.teacher.ckpt=", "NaN or infinite"),
    ("strategy=self_distill strategy.teacher.ckpt=@inf_ckpt", "strategy.teacher.ckpt=", "must be finite"),
    ("eval_only=true", "eval_only=True", "needs init_from"),
    # machine, folders, trainer
    ("trainer.devices=64 data.batch_size=64", "trainer.devices=64", "this machine has"),
    ("trainer.devices=0", "trainer.devices=0", "integer > 0"),
    ("trainer.accelerator=tpu", "trainer.accelerator='tpu'", "auto, cpu, gpu, cuda, mps"),
    ("paths.cache_dir=@a_file/cache", "paths.cache_dir=", "is a file, not a folder"),
    ("paths.cache_lock=nfs", "paths.cache_lock='nfs'", "file, soft"),
    ("trainer.gradient_clip_val=-1", "trainer.gradient_clip_val=-1", "finite number >= 0"),
    ("trainer.limit_train_batches=0", "trainer.limit_train_batches=0", "integer > 0"),
    ("trainer.log_every_n_steps=0", "trainer.log_every_n_steps=0", "integer > 0"),
    ("trainer.max_epochs=0", "trainer.max_epochs=0", "integer > 0"),
    ("trainer.precision=fp8", "trainer.precision='fp8'", "32-true"),
    ("resume=maybe", "resume='maybe'", "true or false"),
    ("deterministic=yes", "deterministic='yes'", "true or false"),
    # noise, model, misc
    ("noise.sigma=inf", "noise.sigma=inf", "finite number"),
    ("noise.sigma=-0.1", "noise.sigma=-0.1", "in [0, 10]"),
    ("model._target_=ssd.models.resnet99", "model._target_='ssd.models.resnet99'", "importable"),
    ("+logger.mlflow._target_=mlflow.Logger", "logger.mlflow._target_='mlflow.Logger'", "importable"),
    ("trainer.compile=maybe", "trainer.compile='maybe'", "true or false"),
    ("trainer.channels_last=sometimes", "trainer.channels_last='sometimes'", "true or false"),
    (
        "strategy=online_distill strategy.ema_bn=average",
        "strategy.ema_bn='average'",
        "ema, student, recompute",
    ),
    ("strategy=online_distill strategy.ema_decay=1", "strategy.ema_decay=1", "[0, 1)"),
    ("strategy=self_distill strategy.taps=[layer9]", "strategy.taps=['layer9']", "not a named tap"),
    ("strategy=self_distill strategy.generations=0", "strategy.generations=0", "integer >= 1"),
    ("strategy=joint strategy.w_rec=0 strategy.w_cls=0", "strategy.w_rec, strategy.w_cls", "at least one"),
    ("noise.eval_levels=[0.1,oops]", "noise.eval_levels=[0.1, 'oops']", "list of numbers"),
    ("seed=-1", "seed=-1", "integer >= 0"),
    # values outside the range where they mean anything (ssd.config.annotations: NoiseStd, Photons, LossWeight)
    ("noise.sigma=1e300", "noise.sigma=1e+300", "in [0, 10]"),
    ("noise.sigma=11", "noise.sigma=11", "in [0, 10]"),
    ("noise.sigma_max=1e300", "noise.sigma_max=1e+300", "in [0, 10]"),
    ("noise.eval_levels=[0.1,1e300]", "noise.eval_levels contains 1e+300", "in [0, 10]"),
    ("bare: data=synthetic noise=poisson noise.ppp=1e300", "noise.ppp=1e+300", "in (0, 1e+06]"),
    ("bare: data=synthetic noise=poisson noise.ppp=0", "noise.ppp=0", "in (0, 1e+06]"),
    ("bare: data=synthetic noise=poisson noise.eval_levels=[1,1e9]", "noise.eval_levels contains", "1e+06]"),
    (
        "bare: data=synthetic noise=poisson_gaussian noise.read_sigma=1e300",
        "noise.read_sigma=1e+300",
        "[0, 10]",
    ),
    ("bare: data=synthetic noise=poisson_gaussian noise.read_sigma=-1", "noise.read_sigma=-1", "[0, 10]"),
    ("strategy=self_distill strategy.lambda=1e300", "strategy.lambda=1e+300", "in [0, 1e+06]"),
    ("strategy=self_distill strategy.teacher_sigma=1e9", "strategy.teacher_sigma=", "in [0, 10]"),
    ("strategy=self_distill strategy.logit_kd.weight=1e9", "strategy.logit_kd.weight=", "in [0, 1e+06]"),
    ("strategy=online_distill strategy.ema_decay=1.5", "strategy.ema_decay=1.5", "[0, 1)"),
    ("strategy=online_distill strategy.ema_decay=-0.1", "strategy.ema_decay=-0.1", "[0, 1)"),
    ("strategy=online_distill strategy.ema_bn_batches=0", "strategy.ema_bn_batches=0", "integer > 0"),
    ("strategy=online_distill strategy.ema_bn_every=0", "strategy.ema_bn_every=0", "integer > 0"),
    ("strategy=online_distill strategy.warmup_epochs=-1", "strategy.warmup_epochs=-1", ">= 0"),
    ("strategy=joint strategy.classifier_lr=0", "strategy.classifier_lr=0", "> 0"),
    ("strategy=joint strategy.w_rec=-1", "strategy.w_rec=-1", ">= 0"),
    ("data.num_classes=0", "data.num_classes=0", "integer > 0"),
    ("data.image_size=0", "data.image_size=0", "integer in [8, 4096]"),
    ("data.image_size=2", "data.image_size=2", "integer in [8, 4096]"),
    ("data.train=1e12", "data.train=1000000000000.0", "integer in (0, 1000000]"),
    (
        "optim.scheduler.warmup_epochs=1e300",
        "optim.scheduler.warmup_epochs=1e+300",
        "<= trainer.max_epochs (1)",
    ),
    ("run_name=''", "run_name=''", "non-empty name"),
    ("data.eval_batch_size=0", "data.eval_batch_size=0", "integer > 0"),
    ("data.batch_size=0", "data.batch_size=0", "integer > 0"),
    ("optim.optimizer.momentum=-0.5", "optim.optimizer.momentum=-0.5", "[0, 1]"),
    ("trainer.max_epochs=1e300", "trainer.max_epochs=1e+300", "integer > 0"),
    ("trainer.check_val_every_n_epoch=0", "trainer.check_val_every_n_epoch=0", "integer > 0"),
    ("eval_seed=-5", "eval_seed=-5", "integer >= 0"),
    # booleans given a non-boolean string (every bool-annotated key is strict)
    ("noise.clip=maybe", "noise.clip='maybe'", "true or false"),
    ("data.augment=maybe", "data.augment='maybe'", "true or false"),
    ("cifar: data.download=maybe", "data.download='maybe'", "true or false"),
    ("trainer.enable_progress_bar=maybe", "trainer.enable_progress_bar='maybe'", "true or false"),
    ("trainer.enable_model_summary=maybe", "trainer.enable_model_summary='maybe'", "true or false"),
    ("strategy=joint strategy.train_classifier=maybe", "strategy.train_classifier='maybe'", "true or false"),
    ("optim.optimizer.nesterov=maybe", "optim.optimizer.nesterov='maybe'", "true or false"),
    ("eval_only=maybe", "eval_only='maybe'", "true or false"),
    ("+trainer.benchmark=maybe", "trainer.benchmark='maybe'", "true or false"),
    # choice-valued keys given a typo
    ("data.pad_mode=mirror", "data.pad_mode='mirror'", "zeros, reflect"),
    ("cifar: data.variant=ful", "data.variant='ful'", "auto, full, subset"),
    ("trainer.strategy=dpp", "trainer.strategy='dpp'", "auto, ddp"),
    ("trainer.precision=16-mixd", "trainer.precision='16-mixd'", "16-mixed"),
    ("stage_seeds=indep", "stage_seeds='indep'", "independent, shared"),
    ("objective=test_accuracy", "objective='test_accuracy'", "test_acc, val_acc"),
    ("strategy=online_distill strategy.teacher_input=noisy", "strategy.teacher_input='noisy'", "clean, same"),
    ("strategy=self_distill strategy.teacher_input=noisy", "strategy.teacher_input='noisy'", "independent"),
    ("strategy=denoiser strategy.target=noisy", "strategy.target='noisy'", "clean, noise2noise"),
    ("tags=notalist", "tags='notalist'", "list of strings"),
    ("callbacks=early_stopping callbacks.early_stopping.mode=maxx", "early_stopping.mode='maxx'", "min, max"),
    ("callbacks=early_stopping callbacks.early_stopping.patience=-1", "early_stopping.patience=-1", ">= 0"),
    ("+trainer.gradient_clip_algorithm=nrm", "trainer.gradient_clip_algorithm='nrm'", "norm, value"),
    ("optim=adamw +optim.optimizer.betas=[0.9,1.5]", "optim.optimizer.betas=[0.9, 1.5]", "in [0, 1)"),
    ("optim=adamw +optim.optimizer.eps=0", "optim.optimizer.eps=0", "finite number > 0"),
    ("+optim.optimizer.dampening=2", "optim.optimizer.dampening=2", "in [0, 1]"),
    ("+trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches=0", "integer > 0"),
    ("logger=csv callbacks.lr_monitor.logging_interval=epochs", "logging_interval='epochs'", "step, epoch"),
    ("strategy=self_distill strategy.student_init=teacher_int", "strategy.student_init=", "teacher_init"),
    ("strategy=self_distill strategy.feature_loss=mae", "strategy.feature_loss='mae'", "mse, nmse, cosine"),
    # requests the data cannot meet, and files a part reads while it is built
    ("data.val_size=0.999", "data.val_size=0.999", "leaves no training images of the 64"),
    ("data.val_size=64", "data.val_size=64", "a count below 64"),
    ("data.val_size=1000", "data.val_size=1000", "a count below 64"),
    (
        "model=tv_resnet18 +model.pretrained=/no/such/file.pt",
        "model.pretrained='/no/such/file.pt'",
        "no such file",
    ),
]
if GPU:  # only meaningful where there is no CUDA GPU
    CASES += [
        ("trainer.accelerator=gpu", "trainer.accelerator='gpu'", "no CUDA GPU"),
        ("trainer.accelerator=cuda", "trainer.accelerator='cuda'", "no CUDA GPU"),
    ]


@pytest.fixture
def tripwires(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace everything that reads data, builds a trainable network or trains with a recorder."""
    called: list[str] = []

    def tripwire(name: str):
        def fail(*args, **kwargs):
            called.append(name)
            raise AssertionError(f"{name} was called for a bad input")

        return fail

    for target in (
        "ssd.pipeline.load_data",
        "ssd.pipeline.build_module",
        "ssd.pipeline.fit_stage",
        "ssd.fit.build_module",
        "ssd.fit.fit_stage",
        "ssd.data.cifar.load_cifar_arrays",
        "ssd.data.folder.scan_image_folder",
        "ssd.data.memory.InMemoryDataModule._ensure_loaded",
        "ssd.data.folder.FolderDataModule._ensure_scanned",
    ):
        monkeypatch.setattr(target, tripwire(target))
    real_build = ssd.parts.build_strategy

    def meta_only(*args, **kwargs):  # validation builds strategies, but only on the meta device
        if torch.get_default_device().type != "meta":
            called.append("ssd.parts.build_strategy off the meta device")
        return real_build(*args, **kwargs)

    monkeypatch.setattr("ssd.parts.build_strategy", meta_only)
    return called


@pytest.mark.parametrize(("overrides", "names", "allowed"), CASES, ids=[c[0][:60] for c in CASES])
def test_bad_input_fails_first_with_one_clear_line(
    overrides: str,
    names: str,
    allowed: str,
    files: dict[str, Path],
    tripwires: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    kind, _, rest = overrides.rpartition(": ")
    base = {"cifar": CIFAR, "bare": [], "": BASE}[kind]
    args = re.sub(r"@(\w+)", lambda m: str(files[m.group(1)]), rest).split()
    cfg = compose_cfg([*base, *args], tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()  # Hydra makes the job folder before the job starts
    code, results = execute(cfg, run_dir, "g")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and results is None
    assert tripwires == []  # no data read, no network built, nothing trained
    assert err and err[-1].startswith("ssd: config error: "), err
    assert names in err[-1] and allowed in err[-1], err[-1]
    assert "is not allowed" in err[-1] or "has no key" in err[-1]
    # the job folder explains itself, and holds nothing else
    assert sorted(p.name for p in run_dir.iterdir()) == ["results.json"]
    recorded = json.loads((run_dir / "results.json").read_text())
    assert recorded["status"] == "failed" and recorded["exit_code"] == 2 and names in recorded["error"]
    assert not (tmp_path / "cache" / "stages").exists()


def test_cases_are_many_and_distinct() -> None:
    assert len(CASES) >= 100 and len({c[0] for c in CASES}) == len(CASES)


def test_command_line_exit_status_and_single_line(tmp_path: Path) -> None:
    """The real entry point: exit status 2, one line on stderr, no traceback, the folder explains it."""
    run_dir = tmp_path / "job"
    done = run_cli([*BASE, "+strategy.lamda=0.1", f"hydra.run.dir={run_dir}"], tmp_path, timeout=180)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [lines[-1]] and "strategy.lamda=0.1 is not allowed" in lines[-1], done.stderr
    assert json.loads((run_dir / "results.json").read_text())["status"] == "failed"
    assert not (run_dir / "main").exists()


def test_command_line_unwritable_output_folder(tmp_path: Path) -> None:
    """An output folder under a file fails before Hydra makes the job folder (ssd.run.OutputFolderCheck)."""
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    done = run_cli(
        [
            *BASE,
            f"hydra.run.dir={blocker}/run",
            "++hydra.callbacks.output_folder._target_=ssd.run.OutputFolderCheck",
        ],
        tmp_path,
        timeout=180,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "hydra.run.dir=" in done.stderr and "is a file, not a folder" in done.stderr
    assert "Traceback" not in done.stderr


def test_image_folder_skips_files_that_are_not_images(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Not-an-image files are found at scan time and skipped with a count in the log, not mid-epoch."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("a", "b"):
            folder = tmp_path / "imgs" / split / cls
            folder.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (tmp_path / "imgs" / "train" / "a" / "notes.jpg").write_text("not an image")
    (tmp_path / "imgs" / "val" / "b" / "empty.png").write_bytes(b"")
    whole = (tmp_path / "imgs" / "train" / "b" / "0.png").read_bytes()
    (tmp_path / "imgs" / "train" / "b" / "cut.png").write_bytes(whole[: len(whole) // 2])  # header intact

    dm = datamodule(
        "imagefolder", root=tmp_path / "imgs", image_size=8, batch_size=2, val_size=0, num_workers=0
    )
    with caplog.at_level(logging.WARNING, logger="ssd.data"):
        dm.setup("fit")
    assert dm.split_sizes() == {"train": 7, "val": 0, "test": 6}  # 6 + the cut one; 7 - 1 empty
    assert "skipping 1 file(s) that are not readable images" in caplog.text and "notes.jpg" in caplog.text
    assert "empty.png" in caplog.text
    dataset = dm.train_dataloader().dataset
    cut = next(i for i, (path, _) in enumerate(dataset.samples) if path.endswith("cut.png"))
    with pytest.raises(OSError, match=r"cut\.png: not a readable image"):
        dataset[cut]  # cut off after a valid header: named when decoded
    unchecked = datamodule(
        "imagefolder", root=tmp_path / "imgs", image_size=8, batch_size=2, val_size=0, check_images=False
    )
    assert unchecked.split_sizes()["train"] == 8


def test_image_folder_config_has_the_limits() -> None:
    cfg = compose_cfg(["data=imagefolder", "data.limit_train=10", "data.limit_test=5"])
    assert (cfg.data.limit_train, cfg.data.limit_test, cfg.data.check_images) == (10, 5, True)
