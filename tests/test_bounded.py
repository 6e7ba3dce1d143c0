"""Out-of-core runs (pcapsense/bounded.py, `pcapsense analyze --passes N`): for every
capture, in both split modes and with several pass counts, the JSON document is byte
for byte the one written from `analyze()`, and the report columns are its table's."""

import io
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import pcapsense
from conftest import PUBLIC, ROOT, crafted, repo_captures
from pcapsense import bounded
from pcapsense.render import jsonout
from pcapsense.render.redact import redact_frame

LAB = ROOT / "sample_pcaps" / "captures"


def _public():
    return sorted(PUBLIC.rglob("*.pcap*")) if PUBLIC.exists() else []


def _arg(path):
    return path if isinstance(path, list) else str(path)


def _reference(path, split="wireshark", redact=True, **kw):
    a = pcapsense.analyze(_arg(path), jobs=1, split=split, tables="connections", **kw)
    if redact:
        a.connections = redact_frame(a.connections)
    buf = io.StringIO()
    jsonout.write(a, buf)
    return a, buf.getvalue()


def _bounded(path, passes, split="wireshark", redact=True, **kw):
    buf = io.StringIO()
    res = bounded.run(_arg(path), passes=passes, json_out=buf, split=split, redact=redact, **kw)
    return res, buf.getvalue()


def _check(path, passes, split="wireshark", reports=True, jobs=1, **kw):
    want, want_json = _reference(path, split, **kw)
    got, got_json = _bounded(path, passes, split, jobs=jobs, **kw)
    assert got_json == want_json
    cols = [c for c in bounded.REPORT_COLUMNS if c in want.connections]
    table = got.connections.copy()
    for col in bounded.SHARED_TEXT + bounded.REPORT_TEXT:          # (kept as categories: the same values)
        if col in table and len(table):
            assert isinstance(table[col].dtype, pd.CategoricalDtype)
            table[col] = table[col].astype(want.connections[col].dtype)
            if want.connections[col].dtype == object:      # (missing: None, as there)
                table[col] = table[col].where(table[col].notna(), None)
    pd.testing.assert_frame_equal(table, want.connections[cols])
    assert got.capture == want.capture
    if reports:
        assert _reports(got) == _reports(want)


def _reports(result):
    """The terminal and Markdown reports of a result (as the CLI renders them)."""
    from rich.console import Console
    from pcapsense.render import markdown, terminal
    buf = io.StringIO()
    terminal.render(result, Console(file=buf, width=160, color_system=None, highlight=False), limit=50)
    return buf.getvalue(), markdown.render(result)


@pytest.mark.parametrize("path", repo_captures() + _public(), ids=lambda p: p.name)
def test_every_capture_in_passes_is_the_analysis(path):
    for split in ("wireshark", "zeek"):
        for passes in (2, 3):
            _check(path, passes, split, reports=passes == 3)


def test_many_passes_and_the_pool_overflow_and_keepalive_context():
    """Cross-connection causes (pool overflow, keep-alive timeouts, concurrency) come
    out the same when a server's connections are spread over many passes."""
    for name in ("lb-pool-overflow-requests.pcap", "la-idle-close.pcap", "la-keepalive-race-aiohttp.pcapng",
                 "la-rate-limited-nginx.pcapng"):
        want, _ = _reference(LAB / name)
        assert len(want.connections) > 3
        for passes in (4, 7, 16):
            _check(LAB / name, passes, jobs=1 if passes == 4 else 2)     # (2: passes read in workers)
    causes = _reference(LAB / "lb-pool-overflow-requests.pcap")[0].connections["cause"].astype(str)
    assert (causes == "pool-overflow").any()


def test_rotated_files_a_window_a_frame_limit_and_tcp_only(tmp_path):
    from test_multifile import split_pcap
    whole = LAB / "lb-pool-overflow-requests.pcap"
    parts = split_pcap(str(whole), 3, tmp_path)
    _check(parts, 3)
    a = pcapsense.analyze(str(whole), jobs=1)
    t = a.connections["start"]
    mid = t.iloc[len(t) // 2]
    _check(whole, 3, since=mid.isoformat())
    _check(whole, 3, max_packets=a.capture.frames // 2)
    _check(whole, 3, layers="tcp")
    _check(whole, 3, redact=False)


def test_no_connection_and_passes_without_one():
    _check(LAB / "la-idle-close.pcap", 3, since="2100-01-01")       # a window with no frame
    one = next(p for p in repo_captures() if len(pcapsense.analyze(str(p), jobs=1).connections) == 1)
    _check(one, 5)                  # four of the five passes hold nothing


def test_bad_input_is_the_same_error():
    with pytest.raises(pcapsense.analysis.CaptureError) as want:
        pcapsense.analyze(crafted("not_a_capture.pcap"), jobs=1)
    with pytest.raises(pcapsense.analysis.CaptureError) as got:
        bounded.run(crafted("not_a_capture.pcap"), passes=3, json_out=io.StringIO())
    assert str(got.value) == str(want.value)


def test_a_truncated_capture_keeps_its_warning():
    path = crafted("truncated.pcap")
    want, want_json = _reference(path)
    got, got_json = _bounded(path, 3)
    assert got_json == want_json
    assert got.capture.truncated and want.capture.truncated


def test_auto_passes_follow_the_size(tmp_path, monkeypatch):
    f = tmp_path / "x.pcap"
    f.write_bytes(b"")
    monkeypatch.setattr(bounded.reader, "input_bytes", lambda files: 10 * (1 << 30) + 1)
    assert bounded.auto_passes([str(f)]) == 5
    monkeypatch.setattr(bounded.reader, "input_bytes", lambda files: 2_200_000_000)
    assert bounded.auto_passes([str(f)]) == 1
    assert bounded.auto_passes(["-"]) == 1


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pcapsense", "analyze", *args], capture_output=True, text=True)


@pytest.mark.parametrize("fmt", ["json", "terminal", "markdown"])
def test_cli_passes_give_the_same_report(fmt, tmp_path):
    path = str(LAB / "lb-pool-overflow-requests.pcap")
    outs = []
    for passes in ("1", "3"):
        out = tmp_path / f"{passes}.{fmt}"
        r = _cli(path, "-f", fmt, "-o", str(out), "--passes", passes, "-q", "--fail-on", "pool-overflow")
        assert r.returncode == 1, r.stderr
        outs.append(out.read_text())
    assert outs[0] == outs[1]
    if fmt == "json":
        assert json.loads(outs[1])["capture"]["connections"] > 3


@pytest.mark.parametrize("fmt", ["json", "html"])
def test_cli_passes_write_into_a_pipe_and_leave_it_a_pipe(fmt, tmp_path):
    """A destination that is not a regular file (a FIFO here; /dev/null the same way)
    is written to directly: the out-of-core run once wrote beside it and renamed its
    file onto it, which replaced /dev/null itself with a regular file (as root)."""
    import os
    import stat
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    opts = ["-f", "json", "-o", str(fifo)] if fmt == "json" else ["--html", str(fifo)]
    r = _cli(str(LAB / "la-idle-close.pcap"), *opts, "--passes", "2", "-q")
    try:
        out, _ = reader.communicate(timeout=60)
    finally:
        reader.kill()
    assert r.returncode == 0, r.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode), "the FIFO was replaced by a file"
    assert list(tmp_path.iterdir()) == [fifo]
    if fmt == "json":
        assert json.loads(out)["capture"]["connections"] >= 1
    else:
        assert out.rstrip().endswith(b"</html>")


def test_cli_passes_bad_input_is_one_line_and_no_output(tmp_path):
    out = tmp_path / "o.json"
    r = _cli(crafted("not_a_capture.pcap"), "-f", "json", "-o", str(out), "--passes", "2")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


def test_a_full_disk_is_one_line(monkeypatch, tmp_path):
    import errno
    path = str(LAB / "la-idle-close.pcap")
    with pytest.raises(bounded.SpillError) as err:
        bounded.run(path, passes=2, tmpdir=str(tmp_path / "missing"))
    assert "\n" not in str(err.value) and "temporary directory" in str(err.value)
    real_open = open

    def full(p, mode="r", *a, **k):
        if "pcapsense-" in str(p) and "w" in mode:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(p, mode, *a, **k)
    monkeypatch.setattr("builtins.open", full)
    with pytest.raises(bounded.SpillError) as err:
        bounded.run(path, passes=2, tmpdir=str(tmp_path), json_out=io.StringIO())
    assert "No space left on device" in str(err.value) and "\n" not in str(err.value)
    assert not list(tmp_path.iterdir())          # the temporary directory is gone


_REAL_READ = bounded._read_pass_in_worker


def _dying_pass(files, opts, k, passes, tmp):
    """A worker killed while it reads pass 1 (OOM killer, kill -9)."""
    import os
    if k == 1:
        os._exit(9)
    return _REAL_READ(files, opts, k, passes, tmp)


def test_a_dead_worker_costs_time_not_the_result(monkeypatch):
    path = LAB / "la-idle-close.pcap"
    want, want_json = _reference(path)
    monkeypatch.setattr(bounded, "_read_pass_in_worker", _dying_pass)
    got, got_json = _bounded(path, 3, jobs=2)
    assert any("died" in w for w in got.capture.warnings)
    assert json.loads(got_json)["connections"] == json.loads(want_json)["connections"]


_PARENT = __import__("os").getpid()
_REAL_STEPS = {"decide": bounded._decide_pass, "finish": bounded._finish_pass}


def _dying_step(step):
    """A worker killed while it decides or finishes pass 1; the same step run in the
    parent, as it is once the workers are gone, runs as it should."""
    def run(pc, *args):
        import os
        if pc.k == 1 and os.getpid() != _PARENT:
            os._exit(9)
        return _REAL_STEPS[step](pc, *args)
    run.__qualname__ = run.__name__ = f"_dying_{step}"
    return run


_dying_decide, _dying_finish = _dying_step("decide"), _dying_step("finish")


@pytest.mark.parametrize("step", ["decide", "finish"])
def test_a_worker_that_dies_deciding_costs_time_not_the_result(monkeypatch, step):
    path = LAB / "la-idle-close.pcap"
    want, want_json = _reference(path)
    monkeypatch.setattr(bounded, f"_{step}_pass", globals()[f"_dying_{step}"])
    got, got_json = _bounded(path, 4, jobs=2)
    assert [w for w in got.capture.warnings if "died" in w] == [
        "a worker process of --jobs 2 died (killed or out of memory); its passes were decided again here"]
    assert json.loads(got_json)["connections"] == json.loads(want_json)["connections"]
    assert (got.connections["cause"].to_numpy() == want.connections["cause"].to_numpy()).all()


GENERATED = __import__("re").compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")


def _html_reference(path, redact=True, max_cards=50, **kw):
    from pcapsense.render import html
    a = pcapsense.analyze(_arg(path), jobs=1, **kw)
    if redact:
        a.connections = redact_frame(a.connections)
    buf = io.StringIO()
    html.write(a, buf, redact=redact, max_cards=max_cards)
    return GENERATED.sub("T", buf.getvalue())


def _html_bounded(path, passes, redact=True, jobs=1, max_cards=50, **kw):
    buf = io.StringIO()
    bounded.run(_arg(path), passes=passes, html_out=buf, redact=redact, jobs=jobs,
                html_options={"max_cards": max_cards}, **kw)
    return GENERATED.sub("T", buf.getvalue())


@pytest.mark.parametrize("path", sorted(LAB.glob("*.pcap*")), ids=lambda p: p.name)
def test_the_html_report_in_passes_is_the_same(path):
    """Verdict, server table, figures (the timeline's FIN/RST markers and request ticks
    from the transitions and exchanges of the connections it draws) and the cards
    (their whole rows, and their packets read again)."""
    assert _html_bounded(path, 3) == _html_reference(path)


def test_the_html_report_sampled_cards_left_out_no_redaction_workers(monkeypatch):
    """The timeline's sample (over plots.TIMELINE_LIMIT connections) and the cards'
    round robin (over max_cards), here with small limits on a capture of 10."""
    from pcapsense import plots
    monkeypatch.setattr(plots, "TIMELINE_LIMIT", 4)
    path = LAB / "la-rate-limited-aiohttp.pcap"
    want = _html_reference(path, max_cards=3)
    assert "showing 4 of 10 connections" in want
    for redact in (True, False):
        assert _html_bounded(path, 5, redact, jobs=2, max_cards=3) == _html_reference(path, redact, max_cards=3)


def test_cli_html_and_report_in_passes(tmp_path):
    path = str(LAB / "lb-pool-overflow-requests.pcap")
    pages = []
    for passes in ("1", "3"):
        page = tmp_path / f"r{passes}.html"
        r = subprocess.run([sys.executable, "-m", "pcapsense", "report", path, "-o", str(page), "--passes", passes],
                           capture_output=True, text=True)
        assert r.returncode == 0 and "wrote" in r.stderr, r.stderr
        pages.append(GENERATED.sub("T", page.read_text()))
        page2 = tmp_path / f"a{passes}.html"
        r = _cli(path, "-f", "json", "-o", str(tmp_path / f"a{passes}.json"), "--html", str(page2), "--passes", passes)
        assert r.returncode == 0, r.stderr
        pages.append(GENERATED.sub("T", page2.read_text()))
    assert pages[0] == pages[2] and pages[1] == pages[3]
    assert (tmp_path / "a1.json").read_text() == (tmp_path / "a3.json").read_text()
    assert not [p for p in tmp_path.iterdir() if "pcapsense-tmp" in p.name]


def test_text_kept_as_categories_is_redacted_like_text():
    """The report tables of a bounded run keep repeated texts (cause_detail, ...) as
    categories; redact_frame redacts them to the same values as the text column."""
    vals = ["GET /a?token=s3cret&x=1 timed out", None, "plain", "GET /a?token=other&x=1 timed out", "plain"]
    text = pd.DataFrame({"cause_detail": pd.Series(vals, dtype="str")})
    cats = pd.DataFrame({"cause_detail": pd.Series(vals).astype("category")})
    got = redact_frame(cats, ("cause_detail",))["cause_detail"]
    want = redact_frame(text, ("cause_detail",))["cause_detail"]
    assert isinstance(got.dtype, pd.CategoricalDtype)
    assert got.astype(object).where(got.notna(), None).tolist() == want.astype(object).where(want.notna(), None).tolist()
    assert "s3cret" not in str(got.tolist()) and len(got.cat.categories) == 2     # the two redacted details merged


@pytest.mark.parametrize("seed", range(6))
def test_redacted_categories_are_the_categorical_of_the_redacted_values(seed):
    """Categories are redacted from their codes; the result is what pd.Categorical makes
    of the redacted values (the categories seen, sorted, merged), whatever the
    categories' order, unused categories or missing values."""
    from pcapsense.render.redact import redact_text
    rng = np.random.default_rng(seed)
    vals = ["GET /a?token=abc", "GET /a?token=xyz", "plain", "b@c", "z", "a;b"]
    for n in (0, 1, 50, 400):
        v = np.array(vals + [None], dtype=object)[rng.integers(0, len(vals) + 1 if n != 50 else 1, n)]
        order = [vals[i] for i in rng.permutation(len(vals))] if seed % 2 else None
        col = pd.Series(pd.Categorical(v, categories=order), index=np.arange(n) + 5)
        got = redact_frame(pd.DataFrame({"cause_detail": col}), ("cause_detail",))["cause_detail"]
        want = pd.Categorical(np.array([None if x is None else redact_text(x) for x in v], dtype=object))
        assert got.cat.categories.equals(want.categories) and got.cat.categories.dtype == want.categories.dtype
        np.testing.assert_array_equal(got.cat.codes.to_numpy(), want.codes)
        assert got.index.equals(col.index)


@pytest.mark.parametrize("codec", ["zstd", None])
def test_spilled_files_round_trip_in_frames(monkeypatch, tmp_path, codec):
    """What a pass spills (its JSON lines, its pickled rows), compressed with zstd when
    pyarrow has it and as it is without: read back in frames with their line counts,
    or as a file by pickle; a file cut short is a one-line SpillError. A whole run
    without zstd gives the same document."""
    if codec is None:
        monkeypatch.setattr(bounded, "_zstd", lambda: (None, None))
    elif bounded._zstd()[0] is None:
        pytest.skip("no zstd in this pyarrow")
    monkeypatch.setattr(bounded._FrameWriter, "FRAME", 1000)
    lines = [json.dumps({"stream": k, "text": "é\n" * (k % 7), "pad": "x" * (k * 37 % 900)}).encode()
             for k in range(500)]
    blocks = [b"\n".join(lines[k:k + 64]) + b"\n" for k in range(0, 500, 64)]
    path = tmp_path / "pass-0.pkl"
    with open(path, "wb") as fh:
        w = bounded._FrameWriter(fh, lines=True)
        for b in blocks:
            w.write(b)
        w.close()
    stored = path.stat().st_size
    assert (stored < sum(map(len, blocks)) / 3) if codec else stored > sum(map(len, blocks))
    r = bounded._FrameReader(open(path, "rb"))
    got, count = [], 0
    while True:
        data, n = r.frames(1500)
        if not data:
            break
        got.append(data)
        count += n
    r.close()
    assert b"".join(got) == b"".join(blocks) and count == 500
    assert all(len(g) >= 1500 for g in got[:-1])
    path.write_bytes(path.read_bytes()[:-5])
    r = bounded._FrameReader(open(path, "rb"))
    with pytest.raises(bounded.SpillError, match="ends early"):
        while r.frames(1 << 20)[0]:
            pass
    r.close()
    table = pcapsense.analyze(str(LAB / "la-idle-close.pcap"), jobs=1).connections
    bounded._dump((table, b"x" * 5000, list(range(3000))), str(tmp_path / "out-0.pkl"))
    back = bounded._load(str(tmp_path / "out-0.pkl"))
    pd.testing.assert_frame_equal(back[0], table)
    assert back[1:] == (b"x" * 5000, list(range(3000)))
    if codec is None:
        _check(LAB / "la-idle-close.pcap", 3, reports=False)
