"""The command line: formats, files, exit codes (typer's CliRunner)."""

import json

from typer.testing import CliRunner

from conftest import crafted, real
from pcapsense.cli import app

runner = CliRunner()


def test_terminal_report_lists_abnormal_first():
    res = runner.invoke(app, ["analyze", real("lo_keepalive.pcap")])
    assert res.exit_code == 0, res.output
    assert "TCP connections" in res.output and "tcp.stream eq" in res.output


def test_json_schema_fields(tmp_path):
    out = tmp_path / "r.json"
    res = runner.invoke(app, ["analyze", crafted("refused.pcap"), "-f", "json", "-o", str(out), "-q"])
    assert res.exit_code == 0
    doc = json.loads(out.read_text())
    assert doc["pcapsense"] == 1
    for key in ("format", "link_types", "frames", "first_time", "last_time", "truncated", "warnings"):
        assert key in doc["capture"]
    c = doc["connections"][0]
    for key in ("stream", "client_ip", "client_port", "server_ip", "server_port", "first_frame",
                "last_frame", "start", "end", "duration_s", "packets", "client_bytes", "server_bytes",
                "conn_state", "history", "closer", "close_kind", "close_frame", "closer_state",
                "peer_state", "rtt_ms", "retransmissions"):
        assert key in c, key
    assert (c["closer"], c["close_kind"], c["conn_state"]) == ("server", "RST", "REJ")
    assert c["start"].endswith("Z")


def test_fail_on():
    assert runner.invoke(app, ["analyze", crafted("refused.pcap"), "--fail-on", "abnormal", "-q"]).exit_code == 1
    assert runner.invoke(app, ["analyze", crafted("ipv6.pcap"), "--fail-on", "abnormal", "-q"]).exit_code == 0
    assert runner.invoke(app, ["analyze", crafted("refused.pcap"), "--fail-on", "rst", "-q"]).exit_code == 1


def test_bad_input_exit_2():
    res = runner.invoke(app, ["analyze", crafted("not_a_capture.pcap")])
    assert res.exit_code == 2


def test_corrupt_record_reports_and_exits_2_after_analysing():
    res = runner.invoke(app, ["analyze", crafted("corrupt_record.pcap"), "-f", "json"])
    assert res.exit_code == 2
    doc = json.loads(res.stdout[: res.stdout.rindex("}") + 1])
    assert doc["capture"]["frames"] == 2 and doc["capture"]["error"]


def test_version():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and "pcapsense" in res.output
