"""What keeps memory down on large captures (bench/README.md section 7 measures it):
the engine hands its stream table over without a copy, tables are concatenated column
by column, the classifier builds its per-row inputs a chunk at a time, transitions are
built on first use, and the JSON writer works in small chunks. Each of these must leave
the results exactly as they were."""

import json
import os
import pickle

import numpy as np
import pandas as pd
import pytest

import pcapsense
from conftest import ROOT, repo_captures
from pcapsense import classify, memory, parallel
from pcapsense.app import facts
from pcapsense.capture import layout, reader
from pcapsense.render import jsonout

LAB = ROOT / "sample_pcaps" / "captures"
# a few lab captures with many rule-decided connections (pool overflow, resets, proxies)
MIXED = sorted(str(p) for p in LAB.glob("l[ab]-*.pcap*") if any(
    k in p.name for k in ("pool-overflow", "middlebox", "proxy", "keepalive-race", "rate-limited")))


def _engine_after(path):
    eng = reader.new_engine(app=False)
    reader.run(path, eng)
    return eng


def test_take_streams_hands_over_the_table_without_a_copy():
    path = MIXED[0]
    eng = _engine_after(path)
    copied = eng.streams()
    table = eng.take_streams()
    assert type(table).__name__ == "Table"
    assert len(table) == len(copied) and len(copied) % layout.STREAM_DTYPE.itemsize == 0
    assert bytes(memoryview(table)) == copied
    rows = np.frombuffer(table, dtype=layout.STREAM_DTYPE)
    assert not rows.flags.writeable                       # read-only view of the engine's block
    assert pickle.loads(pickle.dumps(table)) == copied    # --jobs and Dask move it as bytes
    del table                                             # the array still holds the block
    assert rows["stream"].tolist() == list(range(len(rows)))
    # the engine takes nothing more once its table is gone
    for call in (eng.streams, eng.take_streams, lambda: eng.closed_of(b""),
                 lambda: eng.stream_rows(np.zeros(1, np.int64).tobytes()),
                 lambda: eng.feed(b"", 0, np.empty(1, dtype=layout.PACKET_DTYPE))):
        with pytest.raises(RuntimeError, match="handed over"):
            call()
    assert eng.counters()["streams"] == len(rows)


def test_take_streams_of_an_empty_capture():
    eng = reader.new_engine()
    table = eng.take_streams()
    assert len(table) == 0 and bytes(memoryview(table)) == b""
    assert len(np.frombuffer(table, dtype=layout.STREAM_DTYPE)) == 0


def _exchange(i):
    missing = i % 3 == 0
    return (i // 2, i % 2 + 1, "GET", f"/p/{i}", None if missing else "h", 10 + i,
            1_700_000_000_000_000_001 + i, bool(i % 2), None if missing else 5, None if missing else 200,
            None if missing else "OK", None if missing else 11 + i,
            None if missing else 1_700_000_000_000_000_777 + i, None if missing else True, None, True, False)


def test_exchanges_frame_keeps_no_shared_object_table():
    df = facts.exchanges_frame([_exchange(i) for i in range(100)])
    # one block per column: taking a column out of a batch frees it (facts.concat)
    for blk in df._mgr.blocks:
        assert blk.shape[0] == 1
        base = getattr(blk.values, "base", None)
        assert base is None or np.ndim(base) == 1
    assert df["method"].dtype == object and df["target"].dtype == object
    assert df["request_time"].iloc[0] == pd.Timestamp(1_700_000_000_000_000_001, unit="ns", tz="UTC")
    assert df["depth"].dtype == "Int64" and df["client_keep_alive"].dtype == "boolean"
    empty = facts.exchanges_frame([])
    assert list(empty.columns) == facts.EXCHANGE_COLUMNS and list(empty.dtypes) == list(df.dtypes)


@pytest.mark.parametrize("make", ["exchanges", "facts"])
def test_concat_column_by_column_equals_pd_concat(make):
    if make == "exchanges":
        frames = [facts.exchanges_frame([_exchange(i) for i in range(k, k + 40)]) for k in (0, 40, 80)]
        empty = facts.exchanges_frame([])
    else:
        frames = [facts.facts_frame([{"stream": i, "app_protocol": "http1", "http_requests": i,
                                      "tls": None if i % 2 else True,
                                      "http_host": None if i % 3 else "x"} for i in range(k, k + 40)])
                  for k in (80, 0, 40)]
        empty = facts.facts_frame([])
    expected = pd.concat(frames)
    work = [f.copy() for f in frames] + [empty]
    got = facts.concat(work, empty)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert work == []                                    # the inputs were let go
    assert facts.concat([empty], empty) is empty
    one = frames[0].copy()
    assert facts.concat([one], empty) is one


def test_rule_rows_made_in_small_chunks_give_the_same_causes(monkeypatch):
    whole = {p: pcapsense.analyze(p, jobs=1).connections for p in MIXED}
    monkeypatch.setattr(classify.decision, "SLOW_CHUNK", 3)
    for p, expected in whole.items():
        got = pcapsense.analyze(p, jobs=1).connections
        pd.testing.assert_frame_equal(got, expected)
        assert (got["cause"] != "graceful").any()         # the rules, not only the fast path, ran


def test_transitions_are_built_on_first_use():
    a = pcapsense.analyze(MIXED[0], jobs=1)
    assert not isinstance(a._transitions, pd.DataFrame)
    t = a.transitions
    assert a.transitions is t
    assert len(t) and set(t["endpoint"].astype(str)) == {"client", "server"}
    # the side names agree with the connections' client direction
    cd = a.connections.set_index("stream")["_client_dir"]
    side = np.where(t["endpoint_dir"].to_numpy() == cd.loc[t["stream"]].to_numpy(), "client", "server")
    assert (t["endpoint"].astype(str).to_numpy() == side).all()


def test_json_lines_split_only_at_record_ends(tmp_path):
    """Hostile text (NEL, LINE SEPARATOR, CR) inside a value must not break the document:
    the writer joins the writer's records at its own newlines only."""
    a = pcapsense.analyze(MIXED[0], jobs=1)
    weird = "a\x85b\u2028c\u2029d\re\nf"
    a.connections["cause_detail"] = weird
    for chunk in (1, 2, 500):
        with open(tmp_path / "out.json", "w", encoding="utf-8") as fh:
            jsonout.write(a, fh, chunk_rows=chunk)
        doc = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
        assert len(doc["connections"]) == len(a.connections)
        assert {c["cause_detail"] for c in doc["connections"]} == {weird}
        assert [c["stream"] for c in doc["connections"]] == a.connections["stream"].tolist()


def test_json_chunk_size_does_not_change_the_document():
    a = pcapsense.analyze(MIXED[0], jobs=1)
    import io
    outs = []
    for chunk in (1, 7, 500, 100000):
        buf = io.StringIO()
        jsonout.write(a, buf, chunk_rows=chunk)
        outs.append(buf.getvalue())
    assert len(set(outs)) == 1


def test_release_is_harmless():
    memory.release()
    memory.release()


def test_facts_batches_leave_out_empty_columns_and_concat_restores_them():
    plain = [{"stream": i, "app_protocol": "http1", "http_requests": 1, "http_host": "h"} for i in range(5)]
    tls = [{"stream": i, "app_protocol": "tls", "tls": True, "tls_client_hello_frame": 10 + i,
            "tls_sni": "example.org"} for i in range(5, 8)]
    a, b = facts.facts_frame(plain), facts.facts_frame(tls)
    assert "tls_sni" not in a and "http_host" not in b            # absent, not all-None
    assert len(facts.facts_frame([]).columns) == len(facts.COLUMNS)
    both = facts.concat([a.copy(), b.copy()], facts.facts_frame([]))
    assert both["tls_client_hello_frame"].dtype == "Int64"          # exact ints, not floats
    assert both["tls_client_hello_frame"].isna().tolist() == [True] * 5 + [False] * 3
    assert both["tls"].dtype == "boolean"
    assert both["http_host"].tolist()[:5] == ["h"] * 5 and pd.isna(both["http_host"]).tolist()[5:] == [True] * 3


def test_classifier_sees_missing_fact_columns_as_missing():
    """A connection whose batch had no TLS facts gets the same TLS columns as one that
    had the columns with nothing in them."""
    a = pcapsense.analyze(str(LAB / "lb-pool-overflow-urllib3.pcap"), jobs=1).connections
    for col, kind in facts.COLUMNS.items():
        if col.startswith("_"):              # (internal: the classifier's, not in the table)
            continue
        assert col in a
        if kind == "int":
            assert a[col].dtype == "Int64", col
        elif kind == "bool":
            assert a[col].dtype == "boolean", col
        else:
            assert a[col].dtype == object, col
    assert a["tls_sni"].isna().all() and a["http_host"].notna().any()


def test_text_columns_share_one_object_per_value():
    a = pcapsense.analyze(str(LAB / "lb-pool-overflow-urllib3.pcap"), jobs=1).connections
    ua = [u for u in a["http_user_agent"] if u is not None]
    assert len(ua) > 1 and len({id(u) for u in ua}) == len(set(ua))
    assert memory.shared_strings(pd.Series(["a", None, "a", "b"], dtype="str")).tolist() == ["a", None, "a", "b"]
    assert memory.shared_strings(pd.Series([], dtype=object)).tolist() == []


def test_redaction_copies_nothing_it_does_not_change():
    from pcapsense.render.redact import redact_frame
    df = pd.DataFrame({"http_last_target": pd.Series(["/a?token=s3cret&x=1", None, "/b", "/a?token=s3cret&x=1"],
                                                     dtype=object),
                       "other": [1, 2, 3, 4]})
    out = redact_frame(df)
    assert out["http_last_target"].tolist() == ["/a?token=REDACTED&x=1", None, "/b", "/a?token=REDACTED&x=1"]
    assert df["http_last_target"][0] == "/a?token=s3cret&x=1"          # the input is untouched
    assert np.shares_memory(out["other"].to_numpy(), df["other"].to_numpy())
    clean = pd.DataFrame({"http_last_target": ["/a", "/b"]}, dtype=object)
    assert redact_frame(clean)["http_last_target"].tolist() == ["/a", "/b"]


@pytest.mark.parametrize("path", repo_captures(), ids=lambda p: p.name)
def test_connections_only_gives_the_same_connections(path):
    """tables="connections" (the CLI's terminal, JSON and Markdown reports) builds neither
    the HTTP exchanges nor the transitions, and keeps only the handshake rows the table
    reads: the connections and capture facts are those of a full analysis, in one
    process and in shards."""
    full = pcapsense.analyze(str(path), jobs=1)
    for jobs in (1, 2):
        lean = pcapsense.analyze(str(path), jobs=jobs, tables="connections")
        pd.testing.assert_frame_equal(lean.connections, full.connections)
        assert lean.capture == full.capture


def test_connections_only_says_what_it_left_out(tmp_path):
    a = pcapsense.analyze(MIXED[0], tables="connections")
    for name in ("http", "transitions"):
        with pytest.raises(AttributeError, match=f"the {name} table was left out"):
            getattr(a, name)
        assert not hasattr(a, name)
    assert len(a.tls.columns) and len(a.packets(int(a.connections["stream"].iloc[0])))
    # the plots draw what the connections table holds (the first FIN/RST, no request ticks)
    from pcapsense import plots
    for fn in (plots.timeline, plots.concurrency, plots.idle_gaps):
        assert fn(a).axes
    from pcapsense.render import html, parquet
    assert "<svg" in html.render(a)
    written = parquet.write(a, str(tmp_path / "pq"))
    assert sorted(os.path.basename(w) for w in written) == ["capture.json", "connections.parquet", "tls.parquet"]
    with pytest.raises(ValueError, match="tables must be"):
        pcapsense.analyze(MIXED[0], tables="http")


def test_connections_only_shard_keeps_one_transition_per_handshake():
    from pcapsense.tcp import connections as conn_table
    files = [MIXED[0]]
    full = parallel.read_shard(files, parallel.Options())
    lean = parallel.read_shard(files, parallel.Options(tables="connections"))
    t_full = np.frombuffer(full.transitions, dtype=layout.TRANSITION_DTYPE)
    t_lean = np.frombuffer(lean.transitions, dtype=layout.TRANSITION_DTYPE)
    assert 0 < len(t_lean) < len(t_full) / 4
    assert np.array_equal(t_lean, t_full[conn_table.handshake_acks(t_full)])
    assert len(full.http) > 0 and len(lean.http) == 0
    pd.testing.assert_frame_equal(lean.app, full.app)
