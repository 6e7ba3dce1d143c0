"""`pcapsense record -- COMMAND`: capture while a command runs, then analyse.

1. The capture starts first (tcpdump, else dumpcap: `-i IFACE`, packet-buffered, the
   BPF filter, default `tcp`), and the command waits until the capture tool says it is
   listening; a tool that cannot capture (no root, no CAP_NET_RAW) is a one-line error
   before the command runs. The capture tool dies with pcapsense (PR_SET_PDEATHSIG).
2. The command runs with `SSLKEYLOGFILE` set to a fresh key file (mode 0600, in the
   output directory), so requests, httpx, aiohttp, curl write their TLS keys. Its stdout
   and stderr go to the terminal as they come and into `stdout.log` / `stderr.log`, each
   line prefixed with the UTC time it arrived (so `pcapsense analyze --log` matches them
   again later).
3. When the command ends (exit, crash, signal; Ctrl-C reaches it as it would without
   pcapsense, and a SIGTERM or SIGHUP sent to pcapsense is passed on to it), the capture
   runs `linger_s` more for the last FIN/ACKs, then is stopped (SIGINT: the tool
   flushes), whatever happened, in a `finally`.
4. The capture becomes `capture.pcapng` with the key log inside (live/pcapng.py); the
   key file is removed unless `keep_keys`. Everything is written under a temporary name
   and renamed when complete: nothing is left half-written.
5. The analysis (the keys embedded are used), the program's exceptions matched to the
   connections, the terminal verdict, and `report.html`.

The exit code is the command's (128 + N when a signal N ended it), so `pcapsense record
-- pytest tests/test_api.py` can stand for a CI step.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .pcapng import pcap_to_pcapng

LISTEN_TIMEOUT_S = 15.0


class RecordError(Exception):
    """Recording could not start or finish (one line, said before anything ran when it
    is about the capture)."""


def capture_tool() -> tuple[str, str]:
    """('tcpdump' | 'dumpcap', path) of the capture tool to use."""
    for name in ("tcpdump", "dumpcap"):
        path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
        if path:
            return name, path
    raise RecordError("no capture tool: install tcpdump (apt-get install tcpdump) or Wireshark's dumpcap "
                      "(apt-get install tshark)")


def _die_with_parent() -> None:            # (runs in the capture tool's child, before exec)
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)       # PR_SET_PDEATHSIG
    except OSError:
        pass
    os.setpgid(0, 0)                       # (its own group: a Ctrl-C meant for the command does not stop it)


def capture_argv(tool: str, path: str, iface: str, bpf: str, out: str, snaplen: int) -> list[str]:
    if tool == "tcpdump":
        argv = [path, "-i", iface, "-U", "-n", "-s", str(snaplen), "-w", out]
        if os.geteuid() == 0:
            argv[1:1] = ["-Z", "root"]      # (tcpdump drops to its own user otherwise: the file may be unwritable)
        return argv + ([bpf] if bpf else [])
    return [path, "-i", iface, "-P", "-q", "-s", str(snaplen), "-w", out] + (["-f", bpf] if bpf else [])


@dataclass
class Capture:
    """A running capture tool."""

    tool: str
    proc: subprocess.Popen
    out: str
    messages: list[str] = field(default_factory=list)
    listening: threading.Event = field(default_factory=threading.Event)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGINT (the tool flushes and writes its statistics), then SIGTERM, SIGKILL."""
        if self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


def start_capture(iface: str, bpf: str, out: str, snaplen: int = 262144, stdout: bool = False) -> Capture:
    """Start the capture and return once it listens; RecordError (one line) when it
    cannot (permissions, no such interface, a bad filter). `out` "-" with `stdout`: the
    packets on the process's stdout (a pcap stream, for watch)."""
    tool, path = capture_tool()
    argv = capture_argv(tool, path, iface, bpf, out, snaplen)
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE if stdout else subprocess.DEVNULL, stderr=subprocess.PIPE,
                                preexec_fn=_die_with_parent)
    except OSError as exc:
        raise RecordError(f"cannot start {tool}: {exc.strerror or exc}") from None
    cap = Capture(tool, proc, out)

    def read():
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            cap.messages.append(line)
            if "listening on" in line or line.startswith("Capturing on"):
                cap.listening.set()
    threading.Thread(target=read, daemon=True).start()
    t0 = time.monotonic()
    while not cap.listening.is_set():
        if proc.poll() is not None:
            time.sleep(0.05)                  # (the reader thread takes the last lines)
            raise RecordError(_why(tool, iface, cap.messages))
        if time.monotonic() - t0 > LISTEN_TIMEOUT_S:
            cap.stop()
            raise RecordError(f"{tool} did not start listening on {iface!r} within {LISTEN_TIMEOUT_S:.0f} s")
        cap.listening.wait(0.02)
    if tool == "dumpcap":
        time.sleep(0.2)                       # (dumpcap says "Capturing on" just before it opens the socket)
    return cap


def _why(tool: str, iface: str, messages: list[str]) -> str:
    text = " ".join(m for m in messages if m).strip()
    low = text.lower()
    if "permission" in low or "not permitted" in low or "privilege" in low:
        return (f"cannot capture on {iface!r}: not allowed (not root and no CAP_NET_RAW). Run as root, or give "
                f"the capture tool the capability: sudo setcap cap_net_raw,cap_net_admin=eip $(which {tool}) "
                f"[{tool}: {text[:200]}]")
    return f"{tool} could not capture on {iface!r}: {text[:300] or 'it exited at once'}"


class _Tee(threading.Thread):
    """One of the command's output streams: to our own, and into `log` with each line's
    arrival time (UTC, ISO 8601 prefix), and through the exception scanner (only its
    events are kept: a command that prints for hours costs no memory here)."""

    def __init__(self, src, dst, log_path: Path):
        super().__init__(daemon=True)
        from ..correlate.logscan import Scanner
        self.src, self.dst, self.log_path = src, dst, log_path
        self.scanner = Scanner(prefer_arrival=True)

    def run(self) -> None:
        with open(self.log_path, "w", encoding="utf-8") as log:
            for raw in self.src:
                now = time.time_ns()
                try:
                    self.dst.buffer.write(raw)
                    self.dst.flush()
                except (OSError, ValueError, AttributeError):
                    pass
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                stamp = dt.datetime.fromtimestamp(now / 1e9, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                log.write(f"{stamp} {line}\n")
                log.flush()
                self.scanner.feed(line, now)
        self.scanner.close()


@dataclass
class Recording:
    """What `record()` left: the exit code, the files, the command's timed output lines."""

    exit_code: int
    outdir: Path
    capture: Path
    packets: int
    keys_embedded: bool
    keys_file: Path | None
    stdout_events: list        # the exceptions in the command's stdout (correlate.LogException)
    stderr_events: list
    capture_messages: list[str]


def _fresh_keyfile(outdir: Path) -> Path:
    path = outdir / ".sslkeylog.txt"
    if path.exists():
        path.unlink()
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)
    return path


def default_outdir() -> Path:
    return Path(f"pcapsense-record-{dt.datetime.now():%Y%m%d-%H%M%S}")


def record(command: list[str], *, iface: str = "any", bpf: str = "tcp", outdir: Path | None = None,
           keep_keys: bool = False, linger_s: float = 0.5, on_listening=None) -> Recording:
    """Run `command` under a capture (module docstring). RecordError before the command
    runs when the capture cannot start; the command's own failures are its exit code."""
    if not command:
        raise RecordError("no command to run: pcapsense record [OPTIONS] -- COMMAND [ARGS]")
    exe = command[0]
    if os.sep not in exe and shutil.which(exe) is None:
        raise RecordError(f"command not found: {exe}")
    outdir = Path(outdir or default_outdir())
    created = not outdir.exists()
    outdir.mkdir(parents=True, exist_ok=True)
    try:
        return _record(command, exe, iface, bpf, outdir, keep_keys, linger_s, on_listening)
    except BaseException:
        for name in (".sslkeylog.txt", ".capture-partial.pcap", ".capture-partial.pcapng"):
            (outdir / name).unlink(missing_ok=True)
        if created and not any(outdir.iterdir()):
            outdir.rmdir()
        raise


def _record(command, exe, iface, bpf, outdir: Path, keep_keys, linger_s, on_listening) -> Recording:
    raw = outdir / ".capture-partial.pcap"
    final = outdir / "capture.pcapng"
    keyfile = _fresh_keyfile(outdir)
    cap = None
    proc = None
    code = 0
    old = {}
    try:
        cap = start_capture(iface, bpf, str(raw))
        if on_listening:
            on_listening(cap)
        env = dict(os.environ, SSLKEYLOGFILE=str(keyfile.resolve()))
        try:
            proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as exc:
            raise RecordError(f"cannot run {exe}: {exc.strerror or exc}") from None
        out_t = _Tee(proc.stdout, sys.stdout, outdir / "stdout.log")
        err_t = _Tee(proc.stderr, sys.stderr, outdir / "stderr.log")
        out_t.start()
        err_t.start()

        def forward(sig, _frame):             # SIGTERM/SIGHUP to pcapsense: to the command too
            if proc.poll() is None:
                try:
                    proc.send_signal(sig)
                except ProcessLookupError:
                    pass
        for sig in (signal.SIGTERM, signal.SIGHUP):
            old[sig] = signal.signal(sig, forward)
        old[signal.SIGINT] = signal.signal(signal.SIGINT, _sigint_for(proc))
        while True:
            try:
                code = proc.wait()
                break
            except KeyboardInterrupt:         # (a handler elsewhere raised: keep waiting for the command)
                continue
        out_t.join(5)
        err_t.join(5)
        time.sleep(linger_s)                  # the last FIN/ACKs
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
        if cap is not None:
            cap.stop()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
    keys = keyfile.read_bytes() if keyfile.exists() else b""
    tmp = outdir / ".capture-partial.pcapng"
    try:
        packets = pcap_to_pcapng(str(raw), str(tmp), keys or None)
        os.replace(tmp, final)
    finally:
        for p in (raw, tmp):
            if p.exists():
                p.unlink()
    kept = None
    if keep_keys and keys:
        kept = outdir / "keys.txt"
        os.replace(keyfile, kept)
    else:
        keyfile.unlink(missing_ok=True)
    exit_code = code if code >= 0 else 128 - code
    return Recording(exit_code, outdir, final, packets, bool(keys), kept, out_t.scanner.events,
                     err_t.scanner.events, cap.messages)


def _from_terminal() -> bool:
    """Whether a Ctrl-C reaches the command by itself: we are the terminal's foreground
    process group (the command is in it too)."""
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd):
                return os.tcgetpgrp(fd) == os.getpgrp()
        except OSError:
            continue
    return False


def _sigint_for(proc):
    """Ctrl-C at the terminal reaches the command by itself (same process group): not
    sent twice. A SIGINT sent to pcapsense alone (kill -INT) is passed on."""
    def handler(sig, _frame):
        if proc.poll() is None and not _from_terminal():
            try:
                proc.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass
    return handler
