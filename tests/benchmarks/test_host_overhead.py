"""``sam2rt bench --host-overhead --json FILE``: both outputs measured, the JSON written (it once was not)."""

from __future__ import annotations

import json
from pathlib import Path


def test_host_overhead_writes_json(exported_tiny_256: Path, tmp_path: Path) -> None:
    from sam2rt.cli import main

    out = tmp_path / "host.json"
    assert main(["bench", "--model", str(exported_tiny_256), "--host-overhead", "--frames", "14",
                 "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = report["host_overhead"]
    assert {(r["objects"], r["tracker"].split("output=")[1]) for r in rows} == {
        (1, "result"), (4, "result"), (1, "logits"), (4, "logits")}
    assert all(r["frame"] == "1280x720" and r["frames"] == 4 and r["median_ms"] > 0 for r in rows)
    assert report["machine"]["loadavg_start"] is not None
