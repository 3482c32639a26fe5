"""Checkpoint download (local HTTP server), model building, random weights, strict loading."""

from __future__ import annotations

import hashlib
import os
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from sam2rt.errors import Sam2rtError  # noqa: E402
from sam2rt.export.checkpoints import ModelSource, build_model, sha256_file, write_official_checkpoint  # noqa: E402
from sam2rt.export.download import default_cache_dir, download  # noqa: E402

NAME = "sam2.1_hiera_tiny"
SIZE = 256
PAYLOAD = bytes(range(256)) * 300  # 76,800 bytes
CLOSED_PORT_URL = "http://127.0.0.1:9/sam2.1_hiera_tiny.pt"


# --------------------------------------------------------------------------- models


@pytest.fixture(scope="module")
def seeded() -> tuple[Any, ModelSource]:
    return build_model(NAME, SIZE, random_seed=0)


@pytest.fixture(scope="module")
def official_ckpt(seeded: tuple[Any, ModelSource], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_official_checkpoint(seeded[0], tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def _state(model: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_random_weights_are_deterministic(seeded: tuple[Any, ModelSource]) -> None:
    model, source = seeded
    assert source == ModelSource(NAME, "2.1", "configs/sam2.1/sam2.1_hiera_t.yaml", SIZE, None, 0)
    again, _ = build_model(NAME, SIZE, random_seed=0)
    other, _ = build_model(NAME, SIZE, random_seed=1)
    first, second, third = _state(model), _state(again), _state(other)
    assert first.keys() == second.keys() == third.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    differing = [k for k in first if not torch.equal(first[k], third[k])]
    assert len(differing) >= len(dict(model.named_parameters()))


def test_random_weights_have_no_zero_or_cloned_parameters(seeded: tuple[Any, ModelSource]) -> None:
    model, _ = seeded
    params = dict(model.named_parameters())
    assert not [n for n, p in params.items() if not bool(p.detach().any())]
    by_shape: dict[tuple[int, ...], list[Any]] = {}
    for p in params.values():
        group = by_shape.setdefault(tuple(p.shape), [])
        assert not any(torch.equal(p, q) for q in group)
        group.append(p)
    norm = params["image_encoder.trunk.blocks.0.norm1.weight"].detach()
    assert abs(float(norm.mean()) - 1.0) < 0.05 and 0.0 < float(norm.std()) < 0.05
    assert not model.training and next(model.parameters()).device.type == "cpu"


def test_build_sets_image_size_and_rope(seeded: tuple[Any, ModelSource]) -> None:
    model, _ = seeded
    assert model.image_size == SIZE
    assert model.memory_attention.layers[0].self_attn.freqs_cis.shape[0] == (SIZE // 16) ** 2


@pytest.mark.parametrize("size", [0, -32, 100, 96, 1000, 512.0, True])
def test_invalid_image_size(size: Any) -> None:
    with pytest.raises(Sam2rtError, match=r"multiple of 32.*512 and 1024"):
        build_model(NAME, size, random_seed=0)


@pytest.mark.parametrize("kwargs", [{}, {"checkpoint": Path("x.pt"), "random_seed": 0}])
def test_exactly_one_weight_source(kwargs: dict[str, Any]) -> None:
    with pytest.raises(Sam2rtError, match="exactly one"):
        build_model(NAME, SIZE, **kwargs)


def test_unknown_model_name() -> None:
    with pytest.raises(Sam2rtError, match="unknown model"):
        build_model("sam3_hiera_tiny", SIZE, random_seed=0)


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip(seeded: tuple[Any, ModelSource], official_ckpt: Path) -> None:
    loaded, source = build_model(NAME, SIZE, checkpoint=official_ckpt)
    assert source.checkpoint_sha256 == sha256_file(official_ckpt) and source.random_seed is None
    expected, actual = _state(seeded[0]), _state(loaded)
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[k], actual[k]) for k in expected)


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(Sam2rtError, match=rf"not found; run `sam2rt download {NAME}`"):
        build_model(NAME, SIZE, checkpoint=tmp_path / "absent.pt")


def test_corrupt_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(Sam2rtError, match="corrupt or not a PyTorch checkpoint"):
        build_model(NAME, SIZE, checkpoint=path)


@pytest.mark.parametrize("content", [[1, 2, 3], {"state": {}}, {"model": [1]}])
def test_not_official_format(tmp_path: Path, content: Any) -> None:
    path = tmp_path / "other.pt"
    torch.save(content, path)
    with pytest.raises(Sam2rtError, match=r"official SAM 2 format \{'model': state_dict\}"):
        build_model(NAME, SIZE, checkpoint=path)


def _edited(official: Path, tmp_path: Path, edit: Any) -> Path:
    state = torch.load(official, map_location="cpu", weights_only=True)["model"]
    edit(state)
    path = tmp_path / "edited.pt"
    torch.save({"model": state}, path)
    return path


def test_checkpoint_with_missing_key(official_ckpt: Path, tmp_path: Path) -> None:
    path = _edited(official_ckpt, tmp_path, lambda sd: sd.pop("no_mem_embed"))
    with pytest.raises(Sam2rtError, match=rf"does not belong to model {NAME}: missing keys \(1\): no_mem_embed"):
        build_model(NAME, SIZE, checkpoint=path)


def test_checkpoint_with_extra_key_and_wrong_shape(official_ckpt: Path, tmp_path: Path) -> None:
    def edit(sd: dict[str, Any]) -> None:
        sd["extra.weight"] = torch.zeros(3)
        sd["no_mem_embed"] = torch.zeros(2, 2)

    path = _edited(official_ckpt, tmp_path, edit)
    with pytest.raises(Sam2rtError) as info:
        build_model(NAME, SIZE, checkpoint=path)
    message = str(info.value)
    assert "unexpected keys (1): extra.weight" in message
    assert "no_mem_embed: (2, 2) vs (1, 1, 256)" in message


def test_other_model_checkpoint_lists_at_most_ten(official_ckpt: Path) -> None:
    with pytest.raises(Sam2rtError, match="does not belong to model sam2.1_hiera_small") as info:
        build_model("sam2.1_hiera_small", SIZE, checkpoint=official_ckpt)
    missing = str(info.value).split("missing keys (", 1)[1].split(";", 1)[0]
    assert len(missing.split(": ", 1)[1].split(", ")) <= 10 and missing.endswith("...")


# --------------------------------------------------------------------------- download


class _Handler(BaseHTTPRequestHandler):
    """Serves PAYLOAD; honours ``Range`` unless ``server.ranges`` is off; can truncate."""

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        server: Any = self.server
        server.requests.append(dict(self.headers))
        if self.path != "/model.pt":
            self.send_error(404)
            return
        start = 0
        range_header = self.headers.get("Range")
        if range_header and server.ranges:
            start = int(range_header.removeprefix("bytes=").rstrip("-"))
            if start >= len(PAYLOAD):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: server.truncate] if server.truncate else body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Any]:
    httpd: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.requests, httpd.ranges, httpd.truncate = [], True, 0
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/model.pt"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _paths(cache: Path) -> tuple[Path, Path]:
    target = cache / "checkpoints" / f"{NAME}.pt"
    return target, target.with_name(target.name + ".part")


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SAM2RT_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("SAM2RT_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "sam2rt"


def test_full_download(server: Any, tmp_path: Path) -> None:
    path = download(NAME, tmp_path, progress=False, url=server.url)
    target, part = _paths(tmp_path)
    assert path == target and path.read_bytes() == PAYLOAD and not part.exists()
    assert "Range" not in server.requests[0]
    assert sha256_file(path) == hashlib.sha256(PAYLOAD).hexdigest()


def test_resume_from_part(server: Any, tmp_path: Path) -> None:
    target, part = _paths(tmp_path)
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD[:1000])
    assert download(NAME, tmp_path, progress=False, url=server.url).read_bytes() == PAYLOAD
    assert server.requests[0]["Range"] == "bytes=1000-" and not part.exists()


def test_restart_when_server_ignores_range(server: Any, tmp_path: Path) -> None:
    server.ranges = False
    target, part = _paths(tmp_path)
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 1000)
    assert download(NAME, tmp_path, progress=False, url=server.url).read_bytes() == PAYLOAD


def test_restart_when_part_is_longer_than_file(server: Any, tmp_path: Path) -> None:
    target, part = _paths(tmp_path)
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * (len(PAYLOAD) + 10))
    assert download(NAME, tmp_path, progress=False, url=server.url).read_bytes() == PAYLOAD
    assert [r.get("Range") for r in server.requests] == [f"bytes={len(PAYLOAD) + 10}-", None]


def test_interrupted_download_keeps_part_then_resumes(server: Any, tmp_path: Path) -> None:
    server.truncate = 5000
    with pytest.raises(Sam2rtError, match="stopped at 5000 of 76800 bytes; re-run"):
        download(NAME, tmp_path, progress=False, url=server.url)
    target, part = _paths(tmp_path)
    assert not target.exists() and part.read_bytes() == PAYLOAD[:5000]
    server.truncate = 0
    assert download(NAME, tmp_path, progress=False, url=server.url).read_bytes() == PAYLOAD
    assert server.requests[-1]["Range"] == "bytes=5000-"


def test_existing_file_needs_no_network(tmp_path: Path) -> None:
    target, _ = _paths(tmp_path)
    target.parent.mkdir(parents=True)
    with zipfile.ZipFile(target, "w") as z:  # torch.save's format; a file put there by hand is checked for it
        z.writestr("archive/data.pkl", b"cached")
    assert download(NAME, tmp_path, progress=False, url=CLOSED_PORT_URL) == target


def test_unreachable_url(tmp_path: Path) -> None:
    with pytest.raises(Sam2rtError) as info:
        download(NAME, tmp_path, progress=False, timeout=5, url=CLOSED_PORT_URL)
    message = str(info.value)
    assert CLOSED_PORT_URL in message and "unreachable" in message
    assert "--checkpoint PATH" in message and "--random-weights --seed N" in message
    assert not _paths(tmp_path)[0].exists()


def test_http_error(server: Any, tmp_path: Path) -> None:
    with pytest.raises(Sam2rtError, match="HTTP 404.*--checkpoint PATH"):
        download(NAME, tmp_path, progress=False, url=server.url.replace("model.pt", "nope.pt"))
    assert not _paths(tmp_path)[0].exists()
