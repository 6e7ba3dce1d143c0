"""--jobs and Dask: a capture analysed in shards of connections (pcapsense/parallel.py)
gives exactly the single-process result: the same connections, stream numbers, states,
transitions, HTTP exchanges and causes, for every capture in the repo and for rotated
captures read as one."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import pcapsense
from conftest import BAD_INPUTS, CAPTURES, ROOT, real, repo_captures
from pcapsense import parallel
from pcapsense.capture import layout, reader
from test_multifile import split_pcap

LAB = ROOT / "sample_pcaps" / "captures"


def assert_same(a, b):
    assert b.capture.frames == a.capture.frames
    assert b.capture.tcp_packets == a.capture.tcp_packets
    assert b.capture.warnings == a.capture.warnings
    assert b.capture.error == a.capture.error
    assert b.capture.counters == a.capture.counters
    pd.testing.assert_frame_equal(b.connections, a.connections)
    pd.testing.assert_frame_equal(b.transitions, a.transitions)
    pd.testing.assert_frame_equal(b.http, a.http)


@pytest.mark.parametrize("path", repo_captures(), ids=lambda p: p.name)
def test_every_repo_capture_is_the_same_in_shards(path):
    one = pcapsense.analyze(str(path), jobs=1)
    for jobs in (2, 3):
        assert_same(one, pcapsense.analyze(str(path), jobs=jobs))


def test_the_lab_captures_read_as_one_are_the_same_in_shards():
    """147 connections from 39 files (a 'rotated' capture of real traffic), sharded 2 to
    5 ways, in both splitting modes and with and without the application layer."""
    files = sorted(str(p) for p in LAB.iterdir() if p.suffix in (".pcap", ".pcapng", ".gz"))
    for split, layers in (("wireshark", "all"), ("zeek", "all"), ("wireshark", "tcp")):
        one = pcapsense.analyze(files, jobs=1, split=split, layers=layers)
        assert len(one.connections) >= 147
        for jobs in (2, 5):
            assert_same(one, pcapsense.analyze(files, jobs=jobs, split=split, layers=layers))


def test_shards_partition_the_connections():
    """Every shard reads every frame; each connection is tracked by exactly one shard,
    and every shard gets some on a capture with many connections."""
    files = sorted(str(p) for p in LAB.glob("*.pcap"))
    opts = parallel.Options()
    whole = np.frombuffer(parallel.read_shard(files, opts).streams, dtype=layout.STREAM_DTYPE)
    parts = [parallel.read_shard(files, opts, (k, 3)) for k in range(3)]
    sizes = [len(np.frombuffer(p.streams, dtype=layout.STREAM_DTYPE)) for p in parts]
    assert sum(sizes) == len(whole) and min(sizes) > 0
    assert {p.counters["frames"] for p in parts} == {whole_frames(files)}
    firsts = np.sort(np.concatenate([np.frombuffer(p.streams, dtype=layout.STREAM_DTYPE)["first_frame"]
                                     for p in parts]))
    assert np.array_equal(firsts, np.sort(whole["first_frame"]))


def whole_frames(files):
    return pcapsense.analyze(files, jobs=1, layers="tcp").capture.frames


def test_rotated_files_in_shards_equal_the_whole(tmp_path):
    whole = pcapsense.analyze(real("veth_mtu1500.pcap"), jobs=1)
    split_pcap(real("veth_mtu1500.pcap"), 4, tmp_path)
    assert_same(whole, pcapsense.analyze(str(tmp_path), jobs=3))


def test_bad_input_in_a_worker_is_the_same_one_line_error():
    bad = str(CAPTURES / "crafted" / "not_a_capture.pcap")
    assert "not_a_capture.pcap" in BAD_INPUTS
    with pytest.raises(reader.CaptureError) as single:
        pcapsense.analyze(bad, jobs=1)
    with pytest.raises(reader.CaptureError) as sharded:
        pcapsense.analyze(bad, jobs=2)
    assert str(sharded.value) == str(single.value)
    assert (sharded.value.path, sharded.value.offset) == (single.value.path, single.value.offset)


def test_a_truncated_capture_in_shards_keeps_its_warning():
    one = pcapsense.analyze(real("killed_mid_write.pcap"), jobs=1)
    assert one.capture.truncated
    assert_same(one, pcapsense.analyze(real("killed_mid_write.pcap"), jobs=2))


def test_a_container_cpu_quota_caps_the_default():
    assert parallel._cgroup2_quota("max 100000") is None
    assert parallel._cgroup2_quota("200000 100000\n") == 2.0
    assert parallel._cgroup2_quota("50000 100000") == 0.5
    assert 1 <= parallel.usable_cores() <= len(os.sched_getaffinity(0))


def test_default_jobs_follow_the_capture_size(tmp_path):
    cores = parallel.usable_cores()
    assert parallel.auto_jobs([real("lo_keepalive.pcap")]) == 1
    assert parallel.auto_jobs(["-"]) == 1
    big = tmp_path / "big.pcap"
    with open(big, "wb") as fh:
        fh.truncate(parallel.MIN_BYTES_PER_JOB * 64)       # sparse: no disk used
    assert parallel.auto_jobs([str(big)]) == cores
    assert parallel.auto_jobs([str(big)], layers="tcp") == 1     # shards do not pay without stage 4


def test_cli_jobs_gives_the_same_json(tmp_path):
    files = [str(p) for p in sorted(LAB.glob("*.pcap"))[:12]]
    outs = []
    for jobs in ("1", "2"):
        out = tmp_path / f"j{jobs}.json"
        subprocess.run([sys.executable, "-m", "pcapsense", "analyze", *files, "-j", jobs, "-f", "json",
                        "-o", str(out), "-q"], check=True)
        outs.append(json.loads(out.read_text()))
    assert outs[0]["connections"] == outs[1]["connections"]
    assert len(outs[0]["connections"]) > 20


# ---------------------------------------------------------------------- Dask

@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, host="127.0.0.1")
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_local_cluster_gives_the_single_process_result(dask_cluster):
    assert len(dask_cluster.nthreads()) == 2
    files = sorted(str(p) for p in LAB.iterdir() if p.suffix in (".pcap", ".pcapng", ".gz"))
    for given in (files, real("veth_mtu1500.pcap")):
        one = pcapsense.analyze(given, jobs=1)
        assert_same(one, pcapsense.analyze(given, client=dask_cluster))


def test_cli_scheduler_gives_the_same_json(dask_cluster, tmp_path):
    address = dask_cluster.scheduler.address
    files = [str(p) for p in sorted(LAB.glob("*.pcap"))[:12]]
    outs = []
    for extra in ([], ["--scheduler", address]):
        out = tmp_path / f"{len(extra)}.json"
        subprocess.run([sys.executable, "-m", "pcapsense", "analyze", *files, "-j", "1", "-f", "json",
                        "-o", str(out), "-q", *extra], check=True)
        outs.append(json.loads(out.read_text()))
    assert outs[0]["connections"] == outs[1]["connections"]


def test_cli_scheduler_unreachable_is_one_line(tmp_path):
    p = subprocess.run([sys.executable, "-m", "pcapsense", "analyze", real("lo_keepalive.pcap"),
                        "--scheduler", "tcp://127.0.0.1:9"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Dask scheduler" in lines[0], p.stderr


def test_jobs_with_another_thread_running_use_a_forkserver():
    """A notebook has threads (IOPub, heartbeat): forking then is unsafe, so the workers
    come from a forkserver; the result is the same."""
    import threading
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, daemon=True)
    t.start()
    try:
        ex = parallel._executor(1)
        assert ex._mp_context.get_start_method() == "forkserver"
        ex.shutdown()
        one = pcapsense.analyze(real("veth_mtu1500.pcap"), jobs=1)
        assert_same(one, pcapsense.analyze(real("veth_mtu1500.pcap"), jobs=2))
    finally:
        stop.set()
        t.join()


def _dying_worker(files, opts, shard):
    """A worker's shard (parallel._shard_to_file), but the worker process (forked or
    from the forkserver) dies as if killed."""
    os._exit(9)


def test_a_worker_that_dies_costs_time_not_the_result(monkeypatch):
    """A worker killed mid-way (OOM killer, kill -9): the capture is read again in the
    parent, the result is the single-process one, and a warning says what happened."""
    monkeypatch.setattr(parallel, "_shard_to_file", _dying_worker)
    path = real("veth_mtu1500.pcap")
    one = pcapsense.analyze(path, jobs=1)
    two = pcapsense.analyze(path, jobs=2)
    pd.testing.assert_frame_equal(two.connections, one.connections)
    assert any("worker process" in w and "died" in w for w in two.capture.warnings)


def test_a_shard_goes_back_through_a_file_that_is_removed(tmp_path, monkeypatch):
    """--jobs hands a worker's shard back through a temporary file (the parent then
    never holds the pickled message and its copy at once): the shard read back is the
    one read in place, and no file is left behind, also when the parent fails."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    files, opts = [real("veth_mtu1500.pcap")], parallel.Options()
    direct = parallel.read_shard(files, opts, (1, 2))
    back = parallel._load_shard(parallel._shard_to_file(files, opts, (1, 2)))
    assert bytes(back.streams) == bytes(direct.streams) and len(back.streams) > 0
    assert bytes(back.transitions) == bytes(direct.transitions)
    pd.testing.assert_frame_equal(back.app, direct.app)
    pd.testing.assert_frame_equal(back.http, direct.http)
    assert back.counters == direct.counters and back.formats == direct.formats
    assert list(tmp_path.iterdir()) == []
    one = pcapsense.analyze(files[0], jobs=1)
    assert_same(one, pcapsense.analyze(files[0], jobs=2))
    assert list(tmp_path.iterdir()) == []

    def failing_merge(parts):
        raise RuntimeError("merge failed")
    monkeypatch.setattr(parallel, "merge", failing_merge)
    with pytest.raises(RuntimeError):
        pcapsense.analyze(files[0], jobs=2)
    assert list(tmp_path.iterdir()) == []


def test_a_failing_cluster_is_one_line():
    """A worker that cannot even import what it needs is a cluster failure, reported
    as WorkerError (one line), not a traceback."""
    class Broken:
        def nthreads(self):
            return {"w": 1}

        def submit(self, *a, **k):
            return None

        def gather(self, futures):
            raise OSError("Timed out trying to connect to tcp://10.0.0.9:40000\nafter 30 s")
    with pytest.raises(parallel.WorkerError) as err:
        pcapsense.analyze(real("lo_keepalive.pcap"), client=Broken())
    assert "\n" not in str(err.value) and "OSError" in str(err.value)


def test_a_bad_file_among_rotated_ones_in_shards(tmp_path):
    """Rotated captures with one junk file, sharded: the same frames, connections and
    the same one-line warning naming the junk file as in one process."""
    paths = split_pcap(real("veth_mtu1500.pcap"), 3, tmp_path)
    bad = tmp_path / "junk.pcap"
    bad.write_bytes(b"this is not a capture at all, sorry")
    one = pcapsense.analyze(paths + [str(bad)], jobs=1)
    assert any("junk.pcap" in w for w in one.capture.warnings)
    assert_same(one, pcapsense.analyze(paths + [str(bad)], jobs=3))


def test_worker_pool_stops_its_workers_when_the_block_fails():
    """Ctrl-C (or an error) while workers read: they are stopped at once, the work not
    started is cancelled, and no process is left behind."""
    import time
    t0 = time.time()
    with pytest.raises(KeyboardInterrupt):
        with parallel.worker_pool(2) as pool:
            futures = [pool.submit(time.sleep, 30) for _ in range(4)]
            time.sleep(0.5)
            procs = list(pool._processes.values())
            raise KeyboardInterrupt
    assert time.time() - t0 < 10
    assert procs and not any(p.is_alive() for p in procs)
    assert futures[3].cancelled() or futures[3].done()
