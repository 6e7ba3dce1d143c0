"""Command line, live side: `pcapsense record -- COMMAND` and `pcapsense watch`
(registered on cli.app; the work is in pcapsense/live/)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from .cli import EXIT_BAD_INPUT, _parse_fail_on, _stderr, _write_html, app

IfaceOption = Annotated[str, typer.Option("--interface", "-i", metavar="IFACE",
                                          help="Interface to capture on (tcpdump -i).")]
FilterOption = Annotated[str, typer.Option("--filter", "-f", metavar="BPF",
                                           help="Capture filter (tcpdump syntax).")]


@app.command(context_settings={"allow_interspersed_args": False})
def record(
    command: Annotated[list[str], typer.Argument(metavar="-- COMMAND [ARGS]...", help="The command to run under "
                                                 "the capture (after --).")],
    interface: IfaceOption = "any",
    bpf: FilterOption = "tcp",
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", "-o", metavar="DIR", help="Where to leave "
                          "capture.pcapng (TLS keys inside), report.html, stdout.log and stderr.log (default: "
                          "./pcapsense-record-DATE-TIME).")] = None,
    html: Annotated[bool, typer.Option("--html/--no-html", help="Write DIR/report.html.")] = True,
    keep_keys: Annotated[bool, typer.Option("--keep-keys", help="Keep the TLS key log as DIR/keys.txt (mode 0600) "
                                            "beside the capture; by default it is removed once embedded.")] = False,
    linger: Annotated[float, typer.Option("--linger", min=0.0, metavar="SECONDS", help="Keep capturing this long "
                                          "after the command exits (its last FIN/ACKs).")] = 0.5,
    no_redact: Annotated[bool, typer.Option("--no-redact", help="Keep credentials in the reports.")] = False,
    limit: Annotated[int, typer.Option("--limit", help="Rows in the terminal table.")] = 20,
):
    """Capture while COMMAND runs, then say why its connections ended and which exception each explains.

    SSLKEYLOGFILE is set for COMMAND, so its TLS keys are embedded in DIR/capture.pcapng.
    Exit code: COMMAND's (128 + N when signal N ended it); 2 when the capture cannot start."""
    from . import correlate
    from .analysis import analyze as run_analysis
    from .capture.reader import CaptureError
    from .live.record import RecordError
    from .live.record import record as run_record
    from .render import terminal
    from .render.exceptions import redacted
    from .render.redact import redact_frame
    err = Console(stderr=True, highlight=False)
    try:
        rec = run_record(command, iface=interface, bpf=bpf, outdir=output_dir, keep_keys=keep_keys,
                         linger_s=linger,
                         on_listening=lambda cap: err.print(f"pcapsense: capturing on {interface} ({cap.tool}, "
                                                            f"filter {bpf or 'none'}); running "
                                                            f"{shlex.join(command)}", highlight=False,
                                                            markup=False))
    except RecordError as exc:
        _stderr(f"pcapsense record: error: {exc}")
        raise typer.Exit(EXIT_BAD_INPUT)
    code = rec.exit_code
    err.print(f"pcapsense: {shlex.join(command)} exited with {code}; {rec.packets} packets captured"
              f"{', TLS keys embedded' if rec.keys_embedded else ''}", highlight=False, markup=False)
    try:
        result = run_analysis(str(rec.capture), tables="all" if html else "connections")
    except (CaptureError, ValueError) as exc:
        _stderr(f"pcapsense record: error: cannot analyse {rec.capture}: {exc}")
        raise typer.Exit(code)
    name = shlex.join(command)
    correlate.attach(result, [(f"stderr of {name}", rec.stderr_events), (f"stdout of {name}", rec.stdout_events)])
    if not no_redact:
        result.connections = redact_frame(result.connections)
        result.exceptions = redacted(result.exceptions)
    con = Console(highlight=False)
    if not con.is_terminal:
        con = Console(highlight=False, width=160)
    terminal.render(result, con, limit=limit)
    if html:
        _write_html(result, rec.outdir / "report.html", redact=not no_redact, quiet=False)
    kept = f", {rec.keys_file}" if rec.keys_file else ""
    err.print(f"pcapsense: left {rec.capture}, {rec.outdir / 'stdout.log'}, {rec.outdir / 'stderr.log'}{kept}; "
              f"again: pcapsense analyze {rec.capture} --log {rec.outdir / 'stderr.log'}", highlight=False,
              markup=False, soft_wrap=True)
    raise typer.Exit(code)


def _seconds(text: str, what: str) -> float:
    """'10s', '500ms', '2m', '1h', '7.5' (seconds) -> seconds."""
    t = text.strip().lower()
    for suffix, mult in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if t.endswith(suffix) and t[:-len(suffix)].replace(".", "", 1).isdigit():
            return float(t[:-len(suffix)]) * mult
    if t.replace(".", "", 1).isdigit():
        return float(t)
    _stderr(f"pcapsense watch: error: {what} {text!r} is not a duration (10s, 500ms, 2m)")
    raise typer.Exit(EXIT_BAD_INPUT)


@app.command()
def watch(
    source: Annotated[Optional[str], typer.Argument(metavar="[SOURCE]", help="'-': a pcap/pcapng stream on standard "
                                                     "input (tcpdump -w - -U | pcapsense watch -). Default: capture "
                                                     "live with tcpdump.")] = None,
    interface: IfaceOption = "any",
    bpf: FilterOption = "tcp",
    every: Annotated[str, typer.Option("--every", metavar="DURATION", help="Report interval (10s, 500ms, 1m).")] = "10s",
    fail_on: Annotated[Optional[str], typer.Option("--fail-on", metavar="CAUSE[,CAUSE]", help="Stop with exit code 1 "
                                                   "at the first ending with one of these causes ('abnormal': any; "
                                                   "'rst': any ended by RST).")] = None,
    duration: Annotated[Optional[str], typer.Option("--for", metavar="DURATION", help="Stop after this long "
                                                    "(default: until Ctrl-C or the end of the input).")] = None,
    keylog: Annotated[Optional[list[Path]], typer.Option("--keylog", metavar="FILE", help="TLS key log(s) "
                                                         "(read again every interval: a client appending keys "
                                                         "is followed).")] = None,
    quiet_windows: Annotated[bool, typer.Option("--quiet-windows", help="Print only the windows with an "
                                                "abnormal ending.")] = False,
):
    """Watch a running capture: every interval, the abnormal endings by server and cause.

    With the inferred keep-alive timeouts; memory stays bounded however long it runs.
    Ctrl-C prints the summary of the whole run."""
    import queue
    import threading
    import time as _time

    from rich.text import Text

    from .live.record import RecordError, start_capture
    from .live.watch import StreamSplitter, Watcher, read_stream
    from .render.terminal import safe
    every_s = _seconds(every, "--every")
    until = _time.monotonic() + _seconds(duration, "--for") if duration else None
    if every_s <= 0:
        _stderr("pcapsense watch: error: --every must be more than 0")
        raise typer.Exit(EXIT_BAD_INPUT)
    wanted = _parse_fail_on(fail_on)
    con = Console(highlight=False)
    cap = None
    if source == "-":
        fh = sys.stdin.buffer
        what = "standard input"
    elif source:
        try:
            fh = open(source, "rb")
        except OSError as exc:
            _stderr(f"pcapsense watch: error: {source}: {exc.strerror or exc}")
            raise typer.Exit(EXIT_BAD_INPUT)
        what = source
    else:
        try:
            cap = start_capture(interface, bpf, "-", stdout=True)
        except RecordError as exc:
            _stderr(f"pcapsense watch: error: {exc}")
            raise typer.Exit(EXIT_BAD_INPUT)
        fh = cap.proc.stdout
        what = f"{interface} ({cap.tool}, filter {bpf or 'none'})"
    splitter = StreamSplitter()
    q: "queue.Queue" = queue.Queue()
    stop = threading.Event()
    threading.Thread(target=read_stream, args=(fh, q, splitter, stop), daemon=True).start()
    watcher = Watcher(keylog=[str(k) for k in keylog] if keylog else None)
    con.print(Text(f"pcapsense watch: {what}, every {every_s:g} s; Ctrl-C for the summary", style="dim"))
    pending: list[bytes] = []
    next_t = _time.monotonic() + every_s
    code, eof, error = 0, False, None

    def flush(final: bool = False) -> bool:
        nonlocal pending
        if not splitter.kind:
            return False
        win = watcher.window(splitter.header, pending, splitter.kind, final=final)
        pending = []
        _print_window(con, win, quiet_windows, safe)
        hit = bool(win.causes & wanted) or ("abnormal" in wanted and win.abnormal_rows) or ("rst" in wanted and win.rst)
        return hit
    try:
        while True:
            timeout = max(0.0, next_t - _time.monotonic())
            try:
                item = q.get(timeout=timeout)
            except queue.Empty:
                item = []
            if item is None:
                eof = True
            elif isinstance(item, Exception):
                error, eof = str(item), True
            else:
                pending.extend(item)
            now = _time.monotonic()
            done = eof or (until is not None and now >= until)
            if now >= next_t or done:
                if flush(final=done):
                    code = 1
                    break
                next_t = max(next_t + every_s, now)
            if done:
                break
    except KeyboardInterrupt:
        try:
            flush(final=True)
        except KeyboardInterrupt:
            pass
    finally:
        stop.set()
        if cap is not None:
            cap.stop()
    if error:
        _stderr(f"pcapsense watch: error: {what}: {error}")
    _print_summary(con, watcher.totals, safe)
    raise typer.Exit(code or (EXIT_BAD_INPUT if error else 0))


def _print_window(con: Console, win, quiet: bool, safe) -> None:
    from datetime import datetime

    from rich.text import Text
    if (quiet or (not win.packets and not win.finished and not win.still_open)) and not win.abnormal_rows:
        return                                # (an idle window says nothing)
    n_abn = sum(r[2] for r in win.abnormal_rows)
    head = (f"{datetime.now():%H:%M:%S}  {win.packets} packets, {win.finished} connections ended, "
            f"{n_abn} abnormal; {win.carried} open" + (f", {win.still_open} reported still open"
                                                          if win.still_open else ""))
    con.print(Text(head, style="bold red" if n_abn else None))
    for server, cause, n, detail, _ in sorted(win.abnormal_rows, key=lambda r: -r[2]):
        con.print(Text("  ") + safe(f"{server}  {cause} x{n}: {detail}"), soft_wrap=True)
    for server, ka in win.keepalive.items():
        con.print(Text("  ") + safe(f"keep-alive: {server} closes idle connections after {ka:.3f} s"),
                  style="dim")


def _print_summary(con: Console, t, safe) -> None:
    from rich.text import Text
    con.print(Text(f"pcapsense watch: {t.windows} windows, {t.packets} packets, {t.finished} connections ended, "
                   f"{t.abnormal} abnormal" + (f", {t.stale} reported while still open" if t.stale else ""),
                   style="bold"))
    for (server, cause), n in t.by_server_cause.most_common(30):
        con.print(Text("  ") + safe(f"{server}  {cause} x{n}"))
    for server, ka in t.keepalive_s.items():
        con.print(Text("  ") + safe(f"keep-alive: {server} closes idle connections after {ka:.3f} s"))
