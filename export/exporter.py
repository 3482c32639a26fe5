"""Export a SAM 2 model to the four ONNX graphs, constants and manifest, verified on the spot."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch
from tqdm import tqdm

from sam2rt import __version__, contract as C
from sam2rt.errors import Sam2rtError
from sam2rt.export.checkpoints import ModelSource, build_model, sha256_file
from sam2rt.export.fold import FoldResult, fold_file
from sam2rt.export.image_encoder import ImageEncoderGraph
from sam2rt.export.mask_decoder import MaskDecoderGraph
from sam2rt.export.memory_attention import ATTENTION_FORMS, MemoryAttentionGraph
from sam2rt.export.memory_encoder import MemoryEncoderGraph
from sam2rt.export.verify import format_table, verify_graphs
from sam2rt.manifest import TRACKING_KEYS, make_output_dir, write_manifest
from sam2rt.staging import clean_stale, temp_prefix

OPSET = 18


@dataclass(frozen=True)
class ExportConfig:
    """One export. Exactly one of ``checkpoint`` / ``random_seed``; CLI flags map onto these fields.

    attention: the form of memory attention's products (``export.memory_attention.ATTENTION_FORMS``):
    "fused" (default; what TensorRT fuses: every graph that is built into engines) or "cpu" (ONNX Runtime
    CPU only: the value projection after the weighted sum; ``sam2rt lint`` reports it as not fusable).
    """

    model: str
    out: Path
    image_size: int = 1024
    checkpoint: Path | None = None
    random_seed: int | None = None
    verify: bool = True
    bank: C.BankConfig = field(default_factory=C.BankConfig)
    attention: str = "fused"


def _example_inputs(image_size: int, bank: C.BankConfig) -> dict[str, tuple[torch.Tensor, ...]]:
    """Tracing inputs with every dynamic dim > 1 so the exporter cannot specialise on it."""
    d = C.resolve_dims(image_size)
    h, h2, h4, hw = d["h"], d["h2"], d["h4"], d["hw"]
    B, N, M, P = 2, 3, bank.memory_slots, bank.ptr_slots
    feat = torch.zeros(1, C.HIDDEN_DIM, h, h)
    flags = torch.tensor([True, False])
    return {
        "image_encoder": (torch.zeros(1, 3, image_size, image_size),),
        "memory_attention": (feat, torch.zeros(M, B, hw, C.MEM_DIM), torch.ones(M, B, dtype=torch.bool),
                             torch.zeros(M, B, dtype=torch.int32), torch.zeros(P, B, C.HIDDEN_DIM),
                             torch.ones(P, B, dtype=torch.bool), torch.zeros(P, B)),
        "mask_decoder": (torch.zeros(B, C.HIDDEN_DIM, h, h), torch.zeros(1, 32, h4, h4), torch.zeros(1, 64, h2, h2),
                         torch.zeros(B, N, 2), torch.ones(B, N, dtype=torch.int32), torch.zeros(B, 1, h4, h4),
                         flags, flags),
        "memory_encoder": (feat, torch.zeros(B, 1, h4, h4), flags, torch.zeros(B, 1)),
    }


def _wrappers(model, image_size: int, attention: str = "fused") -> dict[str, Callable[[], torch.nn.Module]]:
    return {
        "image_encoder": lambda: ImageEncoderGraph(model),
        "memory_attention": lambda: MemoryAttentionGraph(model, image_size, attention),
        "mask_decoder": lambda: MaskDecoderGraph(model),
        "memory_encoder": lambda: MemoryEncoderGraph(model),
    }


def export_graph(module: torch.nn.Module, spec: C.GraphSpec, args: tuple[torch.Tensor, ...], path: Path) -> FoldResult:
    """Trace one wrapper to ONNX with the contract's names and dynamic axes, constant-fold it (see
    ``export.fold``: TensorRT cannot parse some of what folding removes), then run the ONNX checker."""
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape arithmetic
        torch.onnx.export(module.eval(), args, str(path), input_names=spec.input_names,
                          output_names=spec.output_names, dynamic_axes=spec.dynamic_axes(),
                          opset_version=OPSET, dynamo=False)
    _restore_unused_inputs(path, spec, args)
    return fold_file(path)


_ONNX_TYPES = {"float32": onnx.TensorProto.FLOAT, "int32": onnx.TensorProto.INT32, "bool": onnx.TensorProto.BOOL}


def _restore_unused_inputs(path: Path, spec: C.GraphSpec, args: tuple[torch.Tensor, ...]) -> None:
    """Put back contract inputs the tracer dropped because a model variant ignores them.

    SAM 2.0 has no temporal pointer encoding and no no-object spatial embedding, so ``obj_ptr_tpos`` and the
    memory encoder's ``object_score_logits`` are unused there; every model still gets the same interface.
    """
    model = onnx.load(str(path))
    present = {i.name: i for i in model.graph.input}
    if len(present) == len(spec.inputs):
        return
    inputs = []
    for t, example in zip(spec.inputs, args):
        if t.name in present:
            inputs.append(present[t.name])
        else:
            shape = [d if d in C.DYNAMIC_DIMS else n for d, n in zip(t.shape, example.shape)]
            inputs.append(onnx.helper.make_tensor_value_info(t.name, _ONNX_TYPES[t.dtype], shape))
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    onnx.save(model, str(path))


def _constants(model) -> dict[str, np.ndarray]:
    t = {
        "no_obj_ptr": model.no_obj_ptr.reshape(-1),
        "no_mem_embed": model.no_mem_embed.reshape(-1) * float(model.directly_add_no_mem_embed),
        "mask_downsample_weight": model.mask_downsample.weight,
        "mask_downsample_bias": model.mask_downsample.bias,
    }
    return {k: v.detach().float().numpy() for k, v in t.items()}


def _tracking_settings(model) -> dict:
    return {k: getattr(model, k) for k in TRACKING_KEYS}


def _manifest(cfg: ExportConfig, source: ModelSource, model, files: dict[str, Path], verification: dict,
              folding: dict[str, FoldResult]) -> dict:
    dims = C.resolve_dims(cfg.image_size)
    graphs = {}
    for spec in C.GRAPHS:
        graphs[spec.name] = {
            "file": spec.filename,
            "sha256": sha256_file(files[spec.name]),
            "inputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.resolve(dims))} for t in spec.inputs],
            "outputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.resolve(dims))} for t in spec.outputs],
            "constant_folding": folding[spec.name].as_json(),
        }
    bank = {**asdict(cfg.bank), "memory_slots": cfg.bank.memory_slots, "ptr_slots": cfg.bank.ptr_slots}
    return {
        "format": C.MANIFEST_FORMAT,
        "model": {"name": source.name, "version": source.version, "config": source.config,
                  "image_size": cfg.image_size},
        "source": {"checkpoint_sha256": source.checkpoint_sha256, "random_seed": source.random_seed},
        "precision": "fp32",
        "opset": OPSET,
        "exporter": {"sam2rt": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                     "sam2": dist_version("sam2"), "onnxruntime": dist_version("onnxruntime"),
                     "attention": cfg.attention},
        "bank": bank,
        "tracking": _tracking_settings(model),
        "constants": C.CONSTANTS_NAME,
        "graphs": graphs,
        "verification": verification,
    }


def check_cond_slots(cond_slots: int) -> None:
    """The runtime's memory selection attends to at least 2 conditioning frames (the official minimum)."""
    if type(cond_slots) is not int or cond_slots < 2:
        raise Sam2rtError(f"--cond-slots {cond_slots!r}: the memory bank needs at least 2 conditioning slots to "
                          "track (the official predictor attends to 2 or more prompted frames); use 2 or more "
                          "(default 4)")


def export_model(cfg: ExportConfig, log: Callable[[str], None] = print) -> Path:
    """Build the model, export, verify and write everything into ``cfg.out``; returns the manifest path.

    Files are written into a temporary directory beside ``cfg.out`` and moved in only when every graph
    passed verification, so a failed export leaves nothing half-written.
    """
    C.check_image_size(cfg.image_size)
    check_cond_slots(cfg.bank.cond_slots)
    if cfg.attention not in ATTENTION_FORMS:
        raise Sam2rtError(f"--attention {cfg.attention!r}: choose {' or '.join(ATTENTION_FORMS)} (fused: for TensorRT "
                          "and the default; cpu: ONNX Runtime CPU only)")
    model, source = build_model(cfg.model, cfg.image_size, checkpoint=cfg.checkpoint, random_seed=cfg.random_seed)
    make_output_dir(cfg.out)  # after every input check, so a bad request creates nothing
    inputs = _example_inputs(cfg.image_size, cfg.bank)
    wrappers = _wrappers(model, cfg.image_size, cfg.attention)
    clean_stale(cfg.out)  # temporary folders of exports that were killed
    with tempfile.TemporaryDirectory(dir=cfg.out, prefix=temp_prefix("export")) as tmp:
        tmp = Path(tmp)
        files, folding = {}, {}
        for spec in tqdm(C.GRAPHS, desc=f"export {cfg.model} @ {cfg.image_size}", unit="graph"):
            files[spec.name] = tmp / spec.filename
            folding[spec.name] = export_graph(wrappers[spec.name](), spec, inputs[spec.name], files[spec.name])
        log("constant folding (nodes): " + ", ".join(f"{n} {f.nodes_before} -> {f.nodes_after}"
                                                     for n, f in folding.items()))
        np.savez(tmp / C.CONSTANTS_NAME, **_constants(model))
        verification: dict = {"skipped": True}
        if cfg.verify:
            checks = verify_graphs(model, tmp, cfg.bank)
            log(format_table(checks))
            verification = {name: c.as_json() for name, c in checks.items()}
            failed = [name for name, c in checks.items() if not c.passed]
            if failed:
                raise Sam2rtError(
                    f"verification failed for {', '.join(failed)}: ONNX Runtime differs from PyTorch by more than "
                    f"the tolerance (see the table); nothing was written to {cfg.out}. Please report this with the "
                    "model name and image size, or re-run with --no-verify to inspect the graphs."
                )
        write_manifest(tmp / C.MANIFEST_NAME, _manifest(cfg, source, model, files, verification, folding))
        for f in [*files.values(), tmp / C.CONSTANTS_NAME, tmp / C.MANIFEST_NAME]:
            shutil.move(str(f), cfg.out / f.name)  # same filesystem: a rename; the manifest last
    return cfg.out / C.MANIFEST_NAME
