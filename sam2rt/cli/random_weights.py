"""One line saying that a model has seeded random weights, as the demo does: its masks mean nothing.

The manifest records where the weights came from (``source.random_seed``: the seed of ``export
--random-weights``, null for a checkpoint); ``Manifest.random_weights`` reads it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sam2rt.manifest import Manifest, load_manifest


def say_random_weights(model: Manifest | Path | str) -> None:
    """Print the note on stderr when ``model`` (a manifest or a model folder) has random weights; a folder
    whose manifest cannot be read says nothing here (the command's own checks report it)."""
    if not isinstance(model, Manifest):
        try:
            model = load_manifest(model)
        except Exception:  # noqa: BLE001 -- the command's own loading reports a bad folder properly
            return
    if model.random_weights:
        print(f"sam2rt: note: {model.directory} has RANDOM WEIGHTS (export --random-weights, seed "
              f"{model.raw['source']['random_seed']}): its masks are NOT meaningful; export with "
              "--checkpoint for real results", file=sys.stderr)
