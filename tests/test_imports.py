"""Import rules: `import sam2rt` loads neither torch nor tensorrt; the runtime never loads torch."""

from __future__ import annotations

import subprocess
import sys


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
                         check=True, capture_output=True, text=True).stdout
    return set(out.split())


def test_package_import_is_light() -> None:
    loaded = _modules_after("import sam2rt")
    assert "torch" not in loaded and "tensorrt" not in loaded


def test_runtime_and_cli_import_no_torch() -> None:
    loaded = _modules_after("import sam2rt.cli, sam2rt.runtime.predictor, sam2rt.runtime.stream, "
                            "sam2rt.runtime.backends, sam2rt.runtime.engine, sam2rt.runtime.model, "
                            "sam2rt.runtime.backends.trt, sam2rt.benchmarks.gpu_check, sam2rt.benchmarks.host_overhead")
    assert "torch" not in loaded and "tensorrt" not in loaded
    assert "onnxruntime" in loaded  # the check would pass vacuously if nothing had been imported
