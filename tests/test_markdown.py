"""`--format markdown`: the verdict, the per-server table and the top disconnects, inert."""

import re

from typer.testing import CliRunner

from conftest import ROOT
import pcapsense
from pcapsense.cli import app
from pcapsense.render import markdown
from test_report_html import hostile  # noqa: F401  (fixture)

runner = CliRunner()
SAMPLE = ROOT / "sample_pcaps" / "captures" / "la-keepalive-race-httpclient.pcap"


def test_markdown_sections():
    res = runner.invoke(app, ["analyze", str(SAMPLE), "--format", "markdown", "-q"])
    assert res.exit_code == 0, res.output
    md = res.output
    assert "#### Verdict" in md and "#### Servers" in md and "#### Top disconnects (3 of 3)" in md
    assert "**3 of 4** connections ended in **keepalive-race**" in md
    assert "**1.001 s**" in md and "`tcp.stream in {0 1 2}`" in md
    assert "| `127.0.0.1:18080` |" in md
    # every table row has the header's number of cells
    for block in re.findall(r"(?:^\|.*\|\n)+", md, flags=re.M):
        rows = [r for r in block.splitlines()]
        widths = {len(re.findall(r"(?<!\\)\|", r)) for r in rows}
        assert len(widths) == 1, rows


def test_markdown_is_inert_and_redacted(hostile):  # noqa: F811
    a = pcapsense.analyze(hostile)
    md = markdown.render(a)
    assert "<script" not in md.lower() and "<img" not in md.lower()
    assert "SECRET123" not in md
    assert "&lt;script&gt;" in md
    assert "SECRET123" not in markdown.render(a, redact=True)


def test_markdown_clean_capture():
    md = markdown.render(pcapsense.analyze(ROOT / "sample_pcaps" / "captures" / "la-graceful-nginx.pcap.gz"))
    assert "No abnormal disconnect" in md and "Top disconnects" not in md
