import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "tests" / "captures"
SHARED = ROOT.parent / "shared"
PUBLIC = SHARED / "corpus" / "public"
sys.path.insert(0, str(ROOT))

BAD_INPUTS = {"not_a_capture.pcap", "corrupt_record.pcap", "empty.pcap", "zero_bytes.pcap"}


def repo_captures():
    """Every readable capture committed in the repo (tests/captures, sample_pcaps)."""
    out = []
    for sub in ("tests/captures/crafted", "tests/captures/real", "sample_pcaps"):
        d = ROOT / sub
        if d.exists():
            out += [p for p in sorted(d.rglob("*")) if p.is_file() and p.name not in BAD_INPUTS
                    and p.suffix in (".pcap", ".pcapng", ".gz")]
    return out


def keylog_of(path) -> str | None:
    """The TLS key log recorded beside a capture (NAME.keys for NAME.pcap[ng][.gz]),
    or None."""
    path = Path(path)
    name = path.name
    for suffix in (".gz", ".pcapng", ".pcap"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    k = path.with_name(name + ".keys")
    return str(k) if k.exists() else None


@pytest.fixture(scope="session")
def tshark():
    exe = shutil.which("tshark")
    if not exe:
        if os.environ.get("CI"):
            pytest.fail("tshark is required in CI (.ci/run installs it)")
        pytest.skip("tshark not installed")
    return exe


def crafted(name: str) -> str:
    return str(CAPTURES / "crafted" / name)


def real(name: str) -> str:
    return str(CAPTURES / "real" / name)


def synflood_module():
    """bench/make_synflood.py as a module (its chunk() writes N one-SYN records)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_synflood", ROOT / "bench" / "make_synflood.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
