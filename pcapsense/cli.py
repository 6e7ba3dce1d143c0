"""Command line: `pcapsense analyze CAPTURE`.

Exit codes (documented in the README): 0 = analysed; 1 = analysed and `--fail-on`
matched; 2 = bad input or usage (one-line message on stderr, never a traceback).
"""

from __future__ import annotations

import enum
import gc
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from . import __version__
from .analysis import analyze as run_analysis, time_window
from .capture.reader import CaptureError
from .bounded import SpillError
from .parallel import TooManyConnections, WorkerError

# options shared by `analyze` and `report`
JobsOption = Annotated[int, typer.Option(
    "--jobs", "-j", min=0, help="Processes to use; 0 (default): the machine's cores (or the container's CPU quota), "
    "at most one per 256 MiB of capture, one with --tcp-only. Results are identical for every value.")]
SchedulerOption = Annotated[Optional[str], typer.Option(
    "--scheduler", metavar="ADDRESS", help="Run on a Dask cluster (tcp://host:8786) instead of local processes; "
    "the capture paths must be readable on its workers. Needs pip install 'pcapsense[dask]'.")]
MaxPacketsOption = Annotated[Optional[int], typer.Option(
    "--max-packets", "-c", min=1, metavar="N", help="Analyse only the first N frames (like tshark -c); the rest "
    "of the capture is not read.")]
SinceOption = Annotated[Optional[str], typer.Option(
    "--since", metavar="TIME", help="Analyse only the frames at or after TIME: ISO 8601 (2026-11-30T14:02:00Z; "
    "UTC unless an offset is given) or epoch seconds. The result is that of the capture cut by editcap -A.")]
UntilOption = Annotated[Optional[str], typer.Option(
    "--until", metavar="TIME", help="Analyse only the frames before TIME (as --since; editcap -B).")]
KeylogOption = Annotated[Optional[list[Path]], typer.Option(
    "--keylog", metavar="FILE", help="TLS key log (SSLKEYLOGFILE format; repeat for several): the TLS connections whose "
    "secrets it holds are decrypted and their HTTP/1 and HTTP/2 read. Without --keylog, $SSLKEYLOGFILE is used when "
    "set (the report says so). Secrets in the capture's pcapng Decryption Secrets Blocks are always used.")]
LogOption = Annotated[Optional[list[Path]], typer.Option(
    "--log", metavar="FILE", help="The program's log or stderr (repeat for several): its Python exceptions "
    "(RemoteDisconnected, ConnectionResetError, ReadTimeout, SSLError, 'Connection pool is full'...) are matched "
    "to the connections that explain them and shown with the verdict. Analysed in one pass.")]
LogTzOption = Annotated[Optional[str], typer.Option(
    "--log-tz", metavar="ZONE", help="Zone of the log's timestamps that carry none (logging's default format): "
    "UTC, +02:00, -0500. Default: this machine's.")]
PassesOption = Annotated[int, typer.Option(
    "--passes", min=0, metavar="N", help="Read the capture N times, each pass tracking 1/N of the connections, so "
    "memory stays flat however large the capture (not with -f parquet or --scheduler). 0 (default): one pass per "
    "2.5 GiB of capture, and more when the capture holds more than 150,000 connections (the reading stops there "
    "and starts again in passes). Results are identical for every value.")]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Why did the connection die? TCP disconnect analysis of pcap/pcapng captures.",
)

EXIT_OK, EXIT_FOUND, EXIT_BAD_INPUT = 0, 1, 2


class Format(str, enum.Enum):
    terminal = "terminal"
    json = "json"
    markdown = "markdown"
    parquet = "parquet"


def _version(value: bool):
    if value:
        print(f"pcapsense {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                           help="Print the version and exit.")] = None):
    """pcapsense: reads a capture, rebuilds every TCP connection on both ends and says who
    closed it, how (FIN/RST) and in which TCP state."""


@app.command()
def analyze(
    capture: Annotated[list[str], typer.Argument(help="pcap or pcapng file(s), optionally gzip-compressed; '-' reads standard input; several files, a directory or a glob are analysed as one capture (rotated captures).")],
    format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.terminal,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the report to this file instead of stdout.")] = None,
    verify_checksums: Annotated[bool, typer.Option("--verify-checksums", help="Drop packets with bad TCP checksums from the analysis (Zeek's default). Off by default: captures taken on the sending host carry wrong checksums (offload).")] = False,
    fail_on: Annotated[Optional[str], typer.Option("--fail-on", metavar="CAUSE[,CAUSE]", help="Exit with code 1 when a connection has one of these causes (taxonomy IDs, e.g. keepalive-race,server-abort), or 'abnormal' (any abnormal ending), or 'rst' (any ended by RST).")] = None,
    no_redact: Annotated[bool, typer.Option("--no-redact", help="Keep credentials (API keys, tokens in URLs) in the report; they are redacted by default.")] = False,
    limit: Annotated[int, typer.Option("--limit", help="Rows in the terminal table.")] = 50,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no warnings on stderr.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Treat a corrupt record as fatal instead of analysing what came before it.")] = False,
    tcp_only: Annotated[bool, typer.Option("--tcp-only", help="Skip HTTP/TLS/HTTP2 parsing (about twice as fast on huge captures); causes then rest on TCP evidence alone.")] = False,
    html: Annotated[Optional[Path], typer.Option("--html", metavar="FILE", help="Also write a self-contained HTML report (timeline, one card per abnormal disconnect) to FILE.")] = None,
    jobs: JobsOption = 0,
    scheduler: SchedulerOption = None,
    max_packets: MaxPacketsOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    passes: PassesOption = 0,
    keylog: KeylogOption = None,
    log: LogOption = None,
    log_tz: LogTzOption = None,
):
    """Analyse one capture and report every TCP connection's ending."""
    err = Console(stderr=True, highlight=False)
    wanted = _parse_fail_on(fail_on)
    # the terminal, JSON and Markdown reports show only connections: the HTTP exchanges
    # and transitions tables are not built for them (HTML shows transitions, Parquet both)
    tables = "all" if html is not None or format is Format.parquet else "connections"
    target = capture if len(capture) > 1 else capture[0]
    layers = "tcp" if tcp_only else "all"
    n_passes = 1 if format is Format.parquet or scheduler or log else _passes(target, passes)
    budget = 0 if format is Format.parquet or log else _budget(target, passes, scheduler)
    logs = _read_logs(log, log_tz)
    while True:
        try:
            if n_passes > 1:
                # out of core (pcapsense/bounded.py): the JSON and HTML are written as the passes end
                from .bounded import MINIMAL_COLUMNS, REPORT_COLUMNS
                result = _run_bounded(
                    target, quiet, err, passes=n_passes, jobs=jobs, redact=not no_redact,
                    columns=MINIMAL_COLUMNS if format is Format.json else REPORT_COLUMNS,
                    json_to=(output or "-") if format is Format.json else None, html_to=html,
                    verify_checksums=verify_checksums, strict=strict, layers=layers, max_packets=max_packets,
                    since=since, until=until, connection_budget=budget, keylog=_keylog(keylog))
                _emit(result, format, output, redact=not no_redact, limit=limit, quiet=quiet, wanted=wanted,
                      json_written=True)
                return
            result = _run(target, quiet, err, verify_checksums=verify_checksums,
                          strict=strict, layers=layers, jobs=jobs, scheduler=scheduler,
                          tables=tables, max_packets=max_packets, since=since, until=until,
                          connection_budget=budget, keylog=_keylog(keylog))
            break
        except TooManyConnections as exc:
            n_passes = _more_passes(exc, budget, jobs, n_passes, quiet)
    if logs:
        from . import correlate
        correlate.attach(result, logs[0], logs[1])
    if not no_redact:
        from .render.exceptions import redacted
        from .render.redact import redact_frame
        result.connections = redact_frame(result.connections)
        result.exceptions = redacted(result.exceptions)
    if html is not None:
        _write_html(result, html, redact=not no_redact, quiet=quiet)
    _emit(result, format, output, redact=not no_redact, limit=limit, quiet=quiet, wanted=wanted)


def _emit(result, format: "Format", output: Optional[Path], *, redact: bool, limit: int, quiet: bool,
          wanted: set[str], json_written: bool = False) -> None:
    """The report in `format` (unless the JSON is already written), the messages on
    stderr, and the exit code."""
    no_redact = not redact
    if format is Format.markdown:
        from .render import markdown
        text = markdown.render(result, redact=not no_redact)
        if output:
            output.write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
    elif format is Format.parquet:
        from .render import parquet
        if not output:
            _stderr("pcapsense: error: --format parquet needs --output DIR (a directory for the tables)")
            raise typer.Exit(EXIT_BAD_INPUT)
        try:
            parquet.write(result, str(output))
        except RuntimeError as exc:
            _stderr(f"pcapsense: error: {exc}")
            raise typer.Exit(EXIT_BAD_INPUT)
    elif format is Format.json and json_written:
        pass
    elif format is Format.json:
        from .render import jsonout
        if output:
            with output.open("w", encoding="utf-8") as fh:
                jsonout.write(result, fh)
        else:
            jsonout.write(result, sys.stdout)
    else:
        from .render import terminal
        if output:
            with output.open("w", encoding="utf-8") as fh:
                terminal.render(result, Console(file=fh, width=160, color_system=None, highlight=False), limit=limit)
        else:
            con = Console(highlight=False)
            if not con.is_terminal:
                con = Console(highlight=False, width=160)
            terminal.render(result, con, limit=limit)
    if result.capture.error:                  # (-q drops progress and warnings, never the error line)
        _stderr(f"pcapsense: error: {result.capture.error}")
    elif format is not Format.terminal and not quiet:
        for w in result.capture.warnings:
            _stderr(f"pcapsense: warning: {w}")
    conns = result.connections
    if wanted and len(conns):
        hit = conns["cause"].isin(wanted - {"abnormal", "rst"})
        if "abnormal" in wanted:
            hit |= conns["abnormal"]
        if "rst" in wanted:
            hit |= conns["close_kind"] == "RST"
        if hit.any():
            raise typer.Exit(EXIT_FOUND)
    if result.capture.error:
        raise typer.Exit(EXIT_BAD_INPUT)


@app.command()
def report(
    capture: Annotated[str, typer.Argument(help="pcap or pcapng file, optionally gzip-compressed; '-' reads standard input.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="The HTML file to write (default: the capture's name + .html in the current directory).")] = None,
    verify_checksums: Annotated[bool, typer.Option("--verify-checksums", help="Drop packets with bad TCP checksums from the analysis.")] = False,
    no_redact: Annotated[bool, typer.Option("--no-redact", help="Keep credentials (API keys, tokens in URLs) in the report; they are redacted by default.")] = False,
    max_cards: Annotated[int, typer.Option("--max-cards", help="At most this many abnormal disconnects get a card (the rest are counted).")] = 50,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no messages on stderr.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Treat a corrupt record as fatal instead of analysing what came before it.")] = False,
    jobs: JobsOption = 0,
    scheduler: SchedulerOption = None,
    max_packets: MaxPacketsOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    passes: PassesOption = 0,
    keylog: KeylogOption = None,
    log: LogOption = None,
    log_tz: LogTzOption = None,
):
    """Write a self-contained HTML report of one capture (to attach to a ticket)."""
    err = Console(stderr=True, highlight=False)
    if output is None:
        output = Path("pcapsense-report.html" if capture == "-" else Path(capture).name + ".html")
    n_passes = 1 if scheduler or log else _passes(capture, passes)
    budget = 0 if log else _budget(capture, passes, scheduler)
    logs = _read_logs(log, log_tz)
    while True:
        try:
            if n_passes > 1:
                from .bounded import MINIMAL_COLUMNS
                result = _run_bounded(capture, quiet, err, passes=n_passes, jobs=jobs,
                                      redact=not no_redact, columns=MINIMAL_COLUMNS, html_to=output,
                                      max_cards=max_cards, verify_checksums=verify_checksums, strict=strict,
                                      max_packets=max_packets, since=since, until=until, connection_budget=budget,
                                      keylog=_keylog(keylog))
                if result.capture.error:
                    _stderr(f"pcapsense: error: {result.capture.error}")
                    raise typer.Exit(EXIT_BAD_INPUT)
                return
            result = _run(capture, quiet, err, verify_checksums=verify_checksums, strict=strict, jobs=jobs,
                          scheduler=scheduler, max_packets=max_packets, since=since, until=until,
                          connection_budget=budget, keylog=_keylog(keylog))
            break
        except TooManyConnections as exc:
            n_passes = _more_passes(exc, budget, jobs, n_passes, quiet)
    if logs:
        from . import correlate
        correlate.attach(result, logs[0], logs[1])
    if not no_redact:
        from .render.redact import redact_frame
        result.connections = redact_frame(result.connections)
    _write_html(result, output, redact=not no_redact, quiet=quiet, max_cards=max_cards)
    if result.capture.error:
        _stderr(f"pcapsense: error: {result.capture.error}")
        raise typer.Exit(EXIT_BAD_INPUT)


def _write_html(result, path: Path, *, redact: bool, quiet: bool, max_cards: int = 50) -> None:
    from .render import html as html_report
    try:
        html_report.write(result, path, redact=redact, max_cards=max_cards)
    except OSError as exc:
        _stderr(f"pcapsense: error: cannot write {path}: {exc.strerror or exc}")
        raise typer.Exit(EXIT_BAD_INPUT)
    if not quiet:
        _stderr(f"pcapsense: wrote {path}")


def _keylog(paths: Optional[list[Path]]):
    """--keylog, else the file $SSLKEYLOGFILE names (app.keylog.ENV_SOURCE marks it so the
    capture facts say where the keys came from), else None."""
    if paths:
        return [str(p) for p in paths]
    env = os.environ.get("SSLKEYLOGFILE")
    if env:
        from .app.keylog import ENV_SOURCE
        return [ENV_SOURCE + os.path.expandvars(env)]
    return None


def _read_logs(paths: Optional[list[Path]], tz_text: Optional[str]):
    """(the exceptions of each --log, the zone) or None; a one-line error (exit 2) for a
    log that cannot be read or a zone that is not one."""
    if not paths:
        return None
    from . import correlate
    try:
        tz = correlate.parse_tz(tz_text)
        return [(str(p), correlate.read_log(p, tz)) for p in paths], tz
    except (ValueError, correlate.LogError) as exc:
        _stderr(f"pcapsense: error: {exc}")
        raise typer.Exit(EXIT_BAD_INPUT)


def _passes(capture, passes: int) -> int:
    """--passes, or its default for this input (bounded.auto_passes)."""
    if passes:
        return passes
    from .bounded import auto_passes
    from .capture.reader import expand_inputs
    try:
        return auto_passes(expand_inputs(capture))
    except (OSError, CaptureError, ValueError):      # (reported by the analysis itself)
        return 1


def _budget(capture, passes: int, scheduler) -> int:
    """The connections a run may hold at once (bounded.CONNECTION_BUDGET), unless
    --passes or --scheduler says how to read, or the input is standard input (it cannot
    be read again in passes): 0, no limit."""
    if passes or scheduler or capture == "-" or (isinstance(capture, list) and "-" in capture):
        return 0
    from . import bounded
    return bounded.CONNECTION_BUDGET


def _more_passes(exc: TooManyConnections, budget: int, jobs: int, passes: int, quiet: bool) -> int:
    """The passes to read the capture in again after `exc` (said on stderr)."""
    from . import bounded
    from .parallel import usable_cores
    more = max(passes + 1, bounded.passes_for(exc, budget, jobs or usable_cores()))
    if not quiet:
        _stderr(f"pcapsense: about {exc.estimate():,} connections, more than {budget:,} at once: "
                f"reading the capture again in {more} passes (--passes)")
    return more


def _run_bounded(capture, quiet: bool, err: Console, *, passes: int, jobs: int, redact: bool, columns,
                 json_to=None, html_to: Optional[Path] = None, max_cards: int = 50, **options):
    """The analysis out of core (pcapsense/bounded.py), `jobs` (0: the usable cores)
    passes read at once. The JSON document (`json_to`: a path, or "-" for stdout) and
    the HTML report (`html_to`) are written as the passes end, each to a temporary
    file beside its destination that is renamed once complete (a destination that is
    not a regular file, such as /dev/null or a FIFO, is written to directly). Returns the result (the
    `columns` of every connection, for the other reports)."""
    from . import bounded
    from .parallel import usable_cores
    opened: list[tuple] = []                    # (file, its temporary path, its destination)

    def target(dest):
        if dest is None:
            return None
        if dest == "-":
            return sys.stdout
        # a device, a FIFO or a socket (/dev/null, /dev/stdout, a pipe) is written to
        # directly: renaming a file onto /dev/null would replace the device itself
        tmp = None if dest.exists() and not dest.is_file() else dest.with_name(f".{dest.name}.pcapsense-tmp")
        try:
            fh = (tmp or dest).open("w", encoding="utf-8")
        except OSError as exc:
            _close(opened, keep=False)
            _stderr(f"pcapsense: error: cannot write {dest}: {exc.strerror or exc}")
            raise typer.Exit(EXIT_BAD_INPUT)
        opened.append((fh, tmp, dest))
        return fh
    json_fh, html_fh = target(json_to), target(html_to)
    try:
        result = _run(capture, quiet, err, runner=lambda **kw: bounded.run(
            capture, passes=passes, json_out=json_fh, html_out=html_fh, html_options={"max_cards": max_cards},
            redact=redact, columns=columns, jobs=jobs or usable_cores(), **kw), scale=passes, **options)
    except BaseException:
        _close(opened, keep=False)
        raise
    _close(opened, keep=True)
    if html_to is not None and not quiet:
        _stderr(f"pcapsense: wrote {html_to}")
    return result


def _close(opened: list, *, keep: bool) -> None:
    """Close the temporary files of _run_bounded: renamed to their destinations
    (`keep`), or removed."""
    for fh, tmp, dest in opened:
        fh.close()
        if tmp is None:                 # (written in place: a device or a pipe)
            continue
        if keep:
            os.replace(tmp, dest)
        else:
            tmp.unlink(missing_ok=True)
    opened.clear()


def _run(capture, quiet: bool, err: Console, *, jobs: int = 0, scheduler: str | None = None, runner=None,
         scale: int = 1, **options):
    """The analysis with a progress bar on a TTY; bad input -> one line, exit code 2.
    `runner(progress=..., **options)`: bounded.run instead of analyze(), reading the
    input `scale` times."""
    try:
        time_window(options.get("since"), options.get("until"))
    except ValueError as exc:               # --since/--until that cannot be read, an empty window
        _stderr(f"pcapsense: error: {exc}")
        raise typer.Exit(EXIT_BAD_INPUT)
    client = _dask_client(scheduler) if scheduler else None
    progress_cb, finish = _progress(capture, quiet, err, scale)
    try:
        if runner is not None:
            return runner(progress=progress_cb, **options)
        return run_analysis(capture, progress=progress_cb, jobs=jobs or None, client=client, **options)
    except (CaptureError, WorkerError, SpillError) as exc:
        _stderr_after(finish, f"pcapsense: error: {exc}")
        raise typer.Exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        finish()
        raise typer.Exit(130)
    finally:
        finish()
        if client is not None:
            client.close()


def _dask_client(address: str):
    """A dask.distributed Client for --scheduler; a one-line error when it cannot be had."""
    try:
        from distributed import Client
    except ImportError:
        _stderr("pcapsense: error: --scheduler needs Dask: pip install 'pcapsense[dask]'")
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        return Client(address, timeout=10)
    except (OSError, TimeoutError, ValueError) as exc:
        _stderr(f"pcapsense: error: cannot reach the Dask scheduler at {address}: {exc}")
        raise typer.Exit(EXIT_BAD_INPUT)


def _stderr_after(finish, line: str) -> None:
    finish()
    _stderr(line)


def _parse_fail_on(value: str | None) -> set[str]:
    from .classify.advice import CAUSES
    if not value:
        return set()
    wanted = {v.strip() for v in value.split(",") if v.strip()}
    bad = wanted - set(CAUSES) - {"abnormal", "rst"}
    if bad:
        raise typer.BadParameter(f"unknown cause(s) {', '.join(sorted(bad))}; one of: abnormal, rst, "
                                 + ", ".join(CAUSES), param_hint="--fail-on")
    return wanted


def _stderr(line: str) -> None:
    """One line on stderr, unwrapped and free of control characters."""
    sys.stderr.write("".join(ch if ch.isprintable() else "?" for ch in line) + "\n")
    sys.stderr.flush()


def _progress(capture, quiet: bool, err: Console, scale: int = 1):
    """A progress bar on a TTY for inputs over 50 MB (rich.progress); several files
    (rotated captures) count as one input, read `scale` times."""
    if quiet or capture == "-" or not err.is_terminal:
        return None, lambda: None
    try:
        from .capture.reader import expand_inputs, input_bytes
        files = expand_inputs(capture)
        if "-" in files:
            return None, lambda: None
        size = input_bytes(files)
    except (OSError, CaptureError, ValueError):
        return None, lambda: None
    if size < 50 << 20:
        return None, lambda: None
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn
    prog = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), console=err, transient=True,
                    auto_refresh=False)
    task = prog.add_task("reading", total=size * scale)
    prog.start()

    def update(pos: int) -> None:
        # refreshed from the reading loop, not by rich's thread: with no thread running,
        # --jobs can fork its workers safely
        prog.update(task, completed=pos)
        prog.refresh()
    return update, prog.stop


from . import cli_live  # noqa: E402,F401  (registers record and watch on app)


def main():
    """The `pcapsense` command. Once its output is flushed it ends with os._exit: the
    interpreter's teardown (every object, then the pandas, pyarrow and numpy modules)
    took 0.17 s of a 2.8 s run on the 2M-packet benchmark and serves no finished
    command. Files and pools are closed by then (with-blocks, the Dask client in _run)."""
    code = 0
    gc.disable()                   # for the rendering too (see memory.no_cyclic_gc)
    try:
        app()
    except SystemExit as exc:
        code = exc.code
    except BrokenPipeError:
        code = 0
    if code is None:
        code = 0
    elif not isinstance(code, int):
        sys.stderr.write(f"{code}\n")
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:          # the reader went away (| head): nothing to flush to
        pass
    os._exit(code)


if __name__ == "__main__":
    main()
