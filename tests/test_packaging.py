"""What `pip install .` (the README's first command) puts in the wheel: every module and
template of the source tree. The other tests run on an editable install, which reads the
source tree directly and so cannot see a package left out of pyproject.toml
(pcapsense.live and pcapsense.correlate once were: `record`, `watch` and `--log` failed
with ModuleNotFoundError on a real install)."""

import os
import shutil
import subprocess
import sys
import zipfile

from conftest import ROOT


def test_the_wheel_holds_every_module_and_template(tmp_path):
    # the wheel pip builds for `pip install .` (isolated build, as a user's), from a
    # clean copy of the sources: a wheel built in the checkout also packs whatever an
    # earlier build left in build/lib, which would hide a missing package
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "pcapsense", src / "pcapsense",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(src)],
                   check=True, capture_output=True, env={**os.environ, "CFLAGS": "-O0"})
    (wheel,) = tmp_path.glob("pcapsense-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = [p.relative_to(ROOT).as_posix() for p in (ROOT / "pcapsense").rglob("*")
              if p.suffix in (".py", ".j2") and "__pycache__" not in p.parts]
    assert len(wanted) > 40
    missing = [p for p in wanted if p not in names]
    assert not missing, f"not in the wheel: {missing}"
    assert any(n.startswith("pcapsense/capture/_engine.") for n in names)       # the compiled engine
