"""Regenerate tests/data/propagation/parity_golden/*.png (run deliberately, after checking why they changed):

python -m tests.propagation.make_parity_golden
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from PIL import Image

from dino_lib.propagation.backbones import build_extractor
from tests.propagation.parity_reference import make_tiny_davis, reference_predictions

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "propagation" / "parity_golden"


def tiny_model():
    return build_extractor("vit_tiny", patch_size=16, model_kwargs={"depth": 2}, seed=0)


def main() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = make_tiny_davis(Path(tmp))
        for t, ids in enumerate(reference_predictions(root, tiny_model().model)):
            Image.fromarray(ids).save(GOLDEN / f"{t:05d}.png")
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()
