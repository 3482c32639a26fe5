"""`sam2rt download edgetam`: the checkpoint is checked against its git object id in the EdgeTAM repository
(a local HTTP server stands in for GitHub; no network)."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from sam2rt.errors import Sam2rtError
from sam2rt.export.download import download, git_blob_sha1
from sam2rt.models import EDGETAM, MODELS, model_info

PAYLOAD = b"not really a checkpoint " * 1000


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        self.wfile.write(PAYLOAD)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/edgetam.pt"
    httpd.shutdown()
    httpd.server_close()


def test_registry_entry() -> None:
    info = model_info("edgetam")
    assert info.family == "edgetam" and info.config == "configs/edgetam.yaml"
    assert info.url.startswith("https://github.com/facebookresearch/EdgeTAM/raw/")
    assert info.url.endswith("/checkpoints/edgetam.pt") and len(info.git_blob_sha1) == 40


def test_git_blob_id_is_gits(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"hello\n")
    assert git_blob_sha1(path) == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object` of "hello\n"


def test_download_not_matching_the_published_id_is_refused(url: str, tmp_path: Path) -> None:
    with pytest.raises(Sam2rtError, match="git object id"):
        download("edgetam", tmp_path, progress=False, url=url)
    assert not any((tmp_path / "checkpoints").iterdir())  # nothing half-written is left


def test_download_matching_the_published_id(url: str, tmp_path: Path, monkeypatch) -> None:
    blob = hashlib.sha1(f"blob {len(PAYLOAD)}\0".encode() + PAYLOAD).hexdigest()
    monkeypatch.setitem(MODELS, "edgetam", dataclasses.replace(EDGETAM, git_blob_sha1=blob))
    path = download("edgetam", tmp_path, progress=False, url=url)
    assert path.read_bytes() == PAYLOAD and path.name == "edgetam.pt"
