"""An independent, dense re-derivation of the DINO DAVIS protocol, step by step.

Used by ``test_parity.py`` and by ``make_parity_golden.py`` (which writes the golden PNGs in
``tests/data/propagation/parity_golden``). Written directly from the reference script's steps, sharing no code with
``dino_lib.propagation`` beyond the backbone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

H, W, N_FRAMES = 64, 96, 4


def make_tiny_davis(root: Path, video: str = "tiny") -> Path:
    """A 4-frame 96 x 64 DAVIS-layout video: smooth texture, two objects moving right/down."""
    from dino_lib.data.palettes import DAVIS_PALETTE

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(H // 8 + 2, W // 8 + 2, 3)).astype(np.float32)
    tex = np.asarray(Image.fromarray(base.astype(np.uint8)).resize((W + 16, H + 16), Image.BILINEAR))
    jpeg, ann = root / "JPEGImages" / "480p" / video, root / "Annotations" / "480p" / video
    jpeg.mkdir(parents=True)
    ann.mkdir(parents=True)
    for t in range(N_FRAMES):
        frame = tex[2 * t : 2 * t + H, 2 * t : 2 * t + W].copy()
        mask = np.zeros((H, W), dtype=np.uint8)
        mask[10 + 2 * t : 30 + 2 * t, 12 + 3 * t : 40 + 3 * t] = 1
        mask[36:56, 50 + 2 * t : 80 + 2 * t] = 2
        frame[mask == 1] = (frame[mask == 1] * 0.3 + np.array([200, 40, 40]) * 0.7).astype(np.uint8)
        frame[mask == 2] = (frame[mask == 2] * 0.3 + np.array([40, 40, 200]) * 0.7).astype(np.uint8)
        Image.fromarray(frame).save(jpeg / f"{t:05d}.jpg", quality=95)
        img = Image.fromarray(mask)
        img.putpalette(DAVIS_PALETTE.reshape(-1).tolist())
        img.save(ann / f"{t:05d}.png")
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text(video + "\n")
    return root


def reference_predictions(root: Path, model: torch.nn.Module, video: str = "tiny", patch: int = 16) -> list[np.ndarray]:
    """Frame reading to writing, densely: returns the id map written for every frame."""
    frames = sorted((root / "JPEGImages" / "480p" / video).glob("*.jpg"))
    first_ann = np.array(Image.open(root / "Annotations" / "480p" / video / "00000.png"))
    h0, w0 = first_ann.shape
    # step 3: H <= W here -> height 480, width floor(480 * W / H / 64) * 64
    nh, nw = 480, int(480 * w0 / h0 / 64) * 64
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.228, 0.224, 0.225])
    gh, gw = nh // patch, nw // patch

    def features(path: Path) -> torch.Tensor:
        img = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None].float()
        img = F.interpolate(img, size=(nh, nw), mode="bilinear", align_corners=False).round().clamp(0, 255)
        x = ((img / 255) - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
        with torch.no_grad():
            tokens = model.get_intermediate_layers(x, n=1)[0][0, 1:]  # (hw, D), step 5
        return F.normalize(tokens, dim=1, p=2)

    # step 4: Pillow NEAREST straight to the grid, C = max id + 1
    small = np.array(Image.fromarray(first_ann).resize((gw, gh), Image.NEAREST))
    c = int(small.max()) + 1
    onehot = torch.zeros(c, gh * gw)
    onehot[torch.from_numpy(small.reshape(-1)).long(), torch.arange(gh * gw)] = 1
    # step 7.3 mask, pair by pair
    ys, xs = np.divmod(np.arange(gh * gw), gw)
    mask = torch.from_numpy(
        ((np.abs(ys[:, None] - ys[None]) <= 12) & (np.abs(xs[:, None] - xs[None]) <= 12)).astype(np.float32)
    )
    first_feat = features(frames[0])
    queue: list[tuple[torch.Tensor, torch.Tensor]] = []
    outputs = [first_ann.astype(np.uint8)]  # step 6
    for path in frames[1:]:
        tgt = features(path)
        ctx = [(first_feat, onehot)] + queue
        aff = torch.stack([torch.exp(tgt @ f.T / 0.1) * mask for f, _ in ctx])  # (n_ctx, hw_tgt, hw_src)
        aff = aff.transpose(2, 1).reshape(-1, gh * gw)  # (n_ctx·hw_src, hw_tgt)
        kth = aff.topk(5, dim=0).values.min(dim=0).values
        aff[aff < kth] = 0
        aff = aff / aff.sum(0, keepdim=True)
        labels = torch.cat([lab for _, lab in ctx], dim=1)  # (C, n_ctx·hw_src)
        pred = labels @ aff  # (C, hw_tgt)
        if len(queue) == 7:
            queue.pop(0)
        queue.append((tgt, pred))
        # step 9
        up = F.interpolate(pred.reshape(1, c, gh, gw), scale_factor=patch, mode="bilinear", align_corners=False)[0]
        for ch in range(c):
            if up[ch].max() > 0:
                up[ch] = up[ch] - up[ch].min()
                up[ch] = up[ch] / up[ch].max()
        ids = up.argmax(0).numpy().astype(np.uint8)
        outputs.append(np.array(Image.fromarray(ids).resize((w0, h0), Image.NEAREST)))
    return outputs
