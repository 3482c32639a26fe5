"""``sam2rt segment``: one image, clicks and/or a box -> a mask PNG, with :class:`~sam2rt.ImagePredictor`.

One click alone is ambiguous, so it gets the official advice: three candidate masks, the one with the best
predicted IoU is written. Several clicks or a box give one mask (``multimask_output=False``).
``--all-masks`` writes the three candidates as OUT_STEM_0.png .. _2.png. numpy, Pillow and the runtime
are imported inside the handler, so registering the subcommand keeps ``sam2rt --help`` instant.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sam2rt.cli.random_weights import say_random_weights
from sam2rt.errors import Sam2rtError


def _mask_paths(out: Path, count: int) -> list[Path]:
    return [out] if count == 1 else [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(count)]


def _check_paths(args: argparse.Namespace) -> list[Path]:
    """Every mask path segment may write, checked before the model loads; returns them."""
    from sam2rt.outputs import check_name_lengths, check_writable_file

    check_name_lengths(args.out, "--out")
    if args.out.suffix.lower() != ".png":
        raise Sam2rtError(f"--out {args.out}: masks are written as PNG; use a name ending in .png")
    if args.out.is_dir():
        raise Sam2rtError(f"--out {args.out} is a folder; pass a file name such as {args.out / 'mask.png'}")
    paths = _mask_paths(args.out, 3) if args.all_masks else [args.out]
    image = args.image.resolve() if args.image.exists() else None
    for path in paths:
        check_writable_file(path, "--out")
        if image is not None and path.exists() and path.resolve() == image:
            raise Sam2rtError(f"--out {path} is the input image; choose another file name for the mask")
    return paths


def _cmd_segment(args: argparse.Namespace) -> int:
    from PIL import Image

    from sam2rt.outputs import make_parents, remove_empty
    from sam2rt.prompts_file import prompts_from_flags
    from sam2rt.runtime.image_files import read_image
    from sam2rt.runtime.image_predictor import ImagePredictor
    from sam2rt.staging import claimed, clean_stale, write_all_or_nothing

    if not args.point and args.box is None:
        raise Sam2rtError("no prompt: pass --point X,Y[,LABEL] (repeatable) and/or --box X0,Y0,X1,Y1")
    prompt = prompts_from_flags(args.point, args.box)[0]  # checks the flags; the predictor checks the range
    paths = _check_paths(args)
    try:
        rgb = read_image(args.image)
    except Sam2rtError as e:
        raise Sam2rtError(f"--image: {e}") from None
    predictor = ImagePredictor(args.model, backend=args.backend, threads=args.threads)
    predictor.set_image(rgb)
    one_click = prompt.box is None and len(prompt.points or ()) == 1
    masks, scores, _ = predictor.predict(point_coords=prompt.points, point_labels=prompt.labels, box=prompt.box,
                                         multimask_output=args.all_masks or one_click)  # (C, H, W), (C,)
    if not args.all_masks:
        best = int(scores.argmax())
        masks, scores = masks[best:best + 1], scores[best:best + 1]
    pngs = {path: (mask > 0).astype("uint8") * 255 for path, mask in zip(paths, masks)}  # (H, W) 0/255
    created = make_parents(args.out)
    try:
        with claimed([(path, "--out") for path in paths]):
            clean_stale(args.out.parent)
            write_all_or_nothing(paths, lambda path, tmp: Image.fromarray(pngs[path]).save(tmp, format="PNG"),
                                 "--out")
    except BaseException:
        remove_empty(created)
        raise
    for path, mask, score in zip(paths, masks, scores):
        print(f"wrote {path} (predicted IoU {score:.3f}, {100 * float((mask > 0).mean()):.1f}% of the image)")
    say_random_weights(predictor.manifest)  # after the work, so that an error stays the only line
    return 0


_EPILOG = """\
examples:
  sam2rt segment --model models/tiny --image truck.jpg --point 500,375 --out mask.png
  sam2rt segment --model models/tiny --image truck.jpg --box 75,275,1725,850 --point 575,750,0 --out mask.png
  sam2rt segment --model models/tiny --image truck.jpg --point 500,375 --out mask.png --all-masks
"""


def add_segment(sub: argparse._SubParsersAction) -> None:
    """Register ``sam2rt segment``."""
    p = sub.add_parser("segment", help="segment one image from clicks and/or a box into a mask PNG",
                       description="Segment one image (the official SAM2ImagePredictor path) and write a 0/255 "
                                   "mask PNG the size of the image.",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="exported model folder (sam2rt export)")
    p.add_argument("--image", type=Path, required=True, help="image file (JPEG, PNG, ...)")
    p.add_argument("--point", action="append", default=[], metavar="X,Y[,LABEL]",
                   help="a click in image pixels; LABEL 1 (on the object, default) or 0 (not on it); repeatable")
    p.add_argument("--box", default=None, metavar="X0,Y0,X1,Y1", help="a box around the object, image pixels")
    p.add_argument("--out", type=Path, required=True, help="mask PNG to write (0 background, 255 object)")
    p.add_argument("--all-masks", action="store_true",
                   help="write all three candidate masks as OUT_STEM_0.png .. OUT_STEM_2.png")
    p.add_argument("--backend", default="ort", choices=("ort", "ort-gpu", "trt"),
                   help="inference backend: ort (ONNX Runtime CPU), ort-gpu (onnxruntime-gpu), trt (TensorRT "
                        "engines from `sam2rt build` in MODEL_DIR/engines)")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads per graph (0: its default)")
    p.set_defaults(func=_cmd_segment)
