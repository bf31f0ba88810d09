"""Build hook: a wheel carries the top-level ``conf/`` as ``ssd/conf`` (found by ``ssd.paths.conf_dir``).

Everything else is in pyproject.toml. An editable install needs no copy: ``conf_dir`` finds
``conf/`` next to the package in a checkout.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CONF = Path(__file__).resolve().parent / "conf"


class BuildPyWithConf(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "ssd" / "conf"
        shutil.rmtree(target, ignore_errors=True)
        # local/ is git-ignored machine-specific config: never shipped
        shutil.copytree(CONF, target, ignore=shutil.ignore_patterns("local", "__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithConf})
