"""Build hook: the wheel carries the repository's top-level conf/ as ``pcsr_lightning/conf``.

conf/ stays the one copy in the repository (editable installs read it in place, see
``pcsr_lightning.config``); only a built wheel gets its own copy, made here at build time.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithConf(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's conf/
        target = Path(self.build_lib) / "pcsr_lightning" / "conf"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(ROOT / "conf", target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithConf})
