"""``vcam bench``: every stage timed on the CPU provider, and the README table made from it."""

from __future__ import annotations

import argparse
import json

from vcam.bench.stages import format_table, main
from vcam.app.settings import load_settings


def test_bench_times_every_stage(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("VCAM_CACHE_DIR", str(tmp_path / "cache"))
    args = argparse.Namespace(frames=5, provider="cpu", photo=None, audio=None, json=True, settings=load_settings())
    assert main(args) == 0
    results = json.loads(capsys.readouterr().out)
    cpu = results["providers"]["cpu"]
    for stage in ("enroll (first)", "enroll (cached)", "features", "motion graph", "render graph", "encode"):
        assert cpu[stage]["p50"] > 0 and cpu[stage]["p95"] >= cpu[stage]["p50"]
    assert cpu["motion graph"]["n"] == 5
    assert cpu["end to end"]["rtf"] > 0
    table = format_table(results)
    assert "| render graph | cpu |" in table and "cores" in table.splitlines()[0]
