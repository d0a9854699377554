"""The propagation core: sparse neighbourhood affinity, joint top-k, soft-label transfer (propagation.md §3, §9).

For one target frame with L2-normalised features ``F_t`` and context frames ``s`` (anchors plus the queue of recent
soft predictions) with features ``F_s`` and label maps ``L_s``:

1. score every context cell inside the target cell's window: ``cos(F_t[i], F_s[j])`` (§3 step 7.1-7.3);
2. keep the ``k`` largest scores over *all* contexts jointly, ties at the k-th value kept (§3 step 7.4);
3. weights = softmax(score / τ) over the kept set, computed in log space (max subtracted, PRP-12) — equal to the
   reference's ``exp(s/τ)`` zeroed below the k-th value and column-normalised (§16), without its overflow;
4. prediction = weighted sum of the context labels (§3 step 7.6); optionally renormalised over the label mass so
   that ignore cells (all-zero label vectors) carry no vote (PRP-03 ``zero_mass``).

The windowed path is tiled (:mod:`dino_lib.propagation.neighbourhood`), so no ``(hw, hw)`` matrix is ever built
(PRP-M2); ``radius=None`` is the unrestricted mode, computed in query chunks under the same memory budget (PRP-M3).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dino_lib.propagation.neighbourhood import WindowShape, dense_window_mask, tile_layout

__all__ = ["PropagationParams", "propagate_frame", "ContextPropagator", "l2_normalise"]


@dataclass(frozen=True)
class PropagationParams:
    """Hyper-parameters of one propagation step (defaults: DINO v1, propagation.md §3).

    Attributes:
        topk: neighbours kept jointly over all contexts.
        temperature: softmax temperature τ.
        radius: half-width of the neighbourhood in feature cells (``size_mask_neighborhood``); None = no window.
        shape: ``square`` (reference) or ``circle`` (CRW / DINOv3 notebook).
        n_last_frames: length of the queue of recent predictions.
        renormalise: divide each prediction by its label mass (ignore cells carry zero mass, PRP-03).
        hard_queue: queue argmax one-hot maps instead of soft ones (PRP-05 option).
        tile: target tile side in cells (speed/memory trade-off only; results do not depend on it).
        memory_budget_mb: upper bound for the score temporaries of one chunk of tiles.
        score_dtype: ``float32`` (exact) or ``bfloat16``: windowed scores are computed in bf16 (several times
            faster on CPUs with bf16 units) only to pre-select the ``topk + preselect_margin`` best candidates,
            which are then re-scored exactly in fp32; equal to the fp32 result unless bf16 rounding pushes a true
            top-k neighbour out of the pre-selection (or more candidates tie than the margin holds).
        preselect_margin: extra candidates kept by the bf16 pre-selection.
    """

    topk: int = 5
    temperature: float = 0.1
    radius: int | None = 12
    shape: WindowShape = "square"
    n_last_frames: int = 7
    renormalise: bool = True
    hard_queue: bool = False
    tile: int = 8
    memory_budget_mb: float = 32.0
    score_dtype: str = "float32"
    preselect_margin: int = 16


def l2_normalise(features: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Unit-norm feature vectors along ``dim`` in float32 (cosine similarity becomes a dot product)."""
    return F.normalize(features.float(), dim=dim, eps=1e-12)


def _weights_from_scores(scores: torch.Tensor, topk: int, temperature: float) -> torch.Tensor:
    """Joint top-k softmax over the last dim of ``scores`` (masked entries are ``-inf``); ties at the k-th kept.

    Dense form (used by the unrestricted mode): returns weights of the same shape as ``scores``.
    """
    k = min(topk, scores.shape[-1])
    kth = scores.topk(k, dim=-1).values[..., -1:]  # (..., 1)
    top = scores.amax(dim=-1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    weights = torch.exp((scores - top) / temperature)  # log-space: exp(0) for the best, never overflows
    weights = torch.where(scores >= kth, weights, torch.zeros_like(weights))
    return weights / weights.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(weights.dtype).tiny)


def _sparse_topk(
    scores: torch.Tensor, topk: int, temperature: float, rows: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint top-k of the last dim as ``(weights, indices)``, each ``(..., kk)``; ties at the k-th value kept.

    ``topk(k + 1)`` reveals ties cheaply (the (k+1)-th equals the k-th); only then is ``kk`` widened to the largest
    number of candidates >= the k-th value, and entries below the k-th value get weight 0 (§3 step 7.4). ``rows``
    (bool, ``scores.shape[:-1]``) marks the rows whose result is used (padding targets are ignored).
    """
    n = scores.shape[-1]
    k = min(topk, n)
    vals, idx = scores.topk(min(k + 1, n), dim=-1)  # (..., k+1), sorted
    kth = vals[..., k - 1 : k]
    tied = (vals[..., k:] == kth) & torch.isfinite(kth)
    if rows is not None:
        tied &= rows.unsqueeze(-1)
    if vals.shape[-1] > k and bool(tied.any()):
        counts = (scores >= kth).sum(-1)
        kk = int((counts if rows is None else counts * rows).max())
        vals, idx = scores.topk(kk, dim=-1)
    keep = (vals >= kth) & torch.isfinite(vals)
    top = torch.where(torch.isfinite(vals[..., :1]), vals[..., :1], torch.zeros_like(vals[..., :1]))
    weights = torch.exp((vals - top) / temperature) * keep  # log-space softmax over the kept set (PRP-12)
    return weights / weights.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(weights.dtype).tiny), idx


def _finish(pred: torch.Tensor, renormalise: bool) -> torch.Tensor:
    """Renormalise ``(..., C)`` predictions over the label mass; all-zero mass stays all-zero (predicts ignore)."""
    if not renormalise:
        return pred
    mass = pred.sum(dim=-1, keepdim=True)
    return torch.where(mass > 1e-6, pred / mass.clamp_min(1e-12), torch.zeros_like(pred))


def _propagate_windowed(
    target: torch.Tensor, ctx_feats: torch.Tensor, ctx_labels: torch.Tensor, params: PropagationParams
) -> torch.Tensor:
    n_ctx, d, h, w = ctx_feats.shape
    c = ctx_labels.shape[1]
    lay = tile_layout(h, w, int(params.radius), params.shape, params.tile)  # type: ignore[arg-type]
    th, tw, rh, rw = lay.tile_h, lay.tile_w, lay.region_h, lay.region_w
    ph, pw = lay.padded_target
    sh, sw = lay.padded_source
    dev = target.device
    # Target tiles: (D, h, w) -> (n_tiles, th*tw, D).
    tgt = F.pad(target, (0, pw - w, 0, ph - h))
    tgt = tgt.reshape(d, lay.n_th, th, lay.n_tw, tw).permute(1, 3, 2, 4, 0).reshape(lay.n_tiles, th * tw, d)
    # Contexts padded and channels-last, so each tile's region is a strided view with contiguous D-runs.
    pad = (lay.pad_x, sw - w - lay.pad_x, lay.pad_y, sh - h - lay.pad_y)
    src = F.pad(ctx_feats, pad).permute(0, 2, 3, 1).contiguous()  # (n_ctx, sh, sw, D)
    labels = F.pad(ctx_labels, pad).permute(0, 2, 3, 1).reshape(n_ctx * sh * sw, c)  # (n_ctx·sh·sw, C)
    # Additive mask: 0 inside the window and the grid, -inf elsewhere; (n_tiles, th·tw, 1, R²).
    bias = torch.zeros(lay.n_tiles, th * tw, 1, rh * rw, device=dev)
    allowed = lay.window.to(dev)[None] & lay.source_valid.to(dev)[:, None, :]
    bias.masked_fill_(~allowed[:, :, None, :], float("-inf"))
    target_valid = lay.target_valid.to(dev)  # (n_tiles, th·tw)
    # Region cell (ctx, u, v) of tile (i, j) -> row of `labels`.
    ti = torch.arange(lay.n_th, device=dev).repeat_interleave(lay.n_tw)
    tj = torch.arange(lay.n_tw, device=dev).repeat(lay.n_th)
    tile_origin = ti * th * sw + tj * tw  # (n_tiles,)
    cell = (
        torch.arange(n_ctx, device=dev).view(-1, 1, 1) * sh * sw
        + torch.arange(rh, device=dev).view(1, -1, 1) * sw
        + torch.arange(rw, device=dev).view(1, 1, -1)
    ).reshape(-1)  # (n_ctx·R²,)

    fast = params.score_dtype == "bfloat16"
    scan = src.to(torch.bfloat16) if fast else src  # what the region matmul reads
    tgt_scan = tgt.to(torch.bfloat16) if fast else tgt
    src_rows = src.view(n_ctx * sh * sw, d)  # fp32 rows for the exact re-scoring of pre-selected candidates
    per_tile = scan.element_size() * n_ctx * rh * rw * d + 4 * n_ctx * rh * rw * 3 * th * tw
    chunk = max(1, int(params.memory_budget_mb * 2**20 // per_tile))
    out = torch.empty(lay.n_tiles, th * tw, c, dtype=torch.float32, device=dev)
    for start in range(0, lay.n_tiles, chunk):
        stop = min(start + chunk, lay.n_tiles)
        n = stop - start
        # Regions of tiles start..stop: views with contiguous (rw·D) runs, copied once into one batch.
        parts = [
            scan[:, (t // lay.n_tw) * th : (t // lay.n_tw) * th + rh, (t % lay.n_tw) * tw : (t % lay.n_tw) * tw + rw]
            for t in range(start, stop)
        ]  # each (n_ctx, rh, rw, D)
        fr = torch.stack(parts).reshape(n, n_ctx * rh * rw, d)  # (T, n_ctx·R², D)
        scores = torch.bmm(tgt_scan[start:stop], fr.transpose(1, 2)).float()  # (T, th·tw, n_ctx·R²)
        scores = scores.view(n, th * tw, n_ctx, rh * rw).add_(bias[start:stop]).view(n, th * tw, -1)
        if fast:
            # bf16 scores only pre-select candidates; the kept ones are re-scored exactly in fp32.
            cand = scores.topk(min(params.topk + params.preselect_margin, scores.shape[-1]), dim=-1).indices
            rows = tile_origin[start:stop].view(-1, 1, 1) + cell[cand]  # (T, th·tw, m)
            exact = (src_rows[rows] * tgt[start:stop].unsqueeze(2)).sum(-1)  # (T, th·tw, m)
            exact = exact.masked_fill(scores.gather(-1, cand).isneginf(), float("-inf"))  # outside window/grid
            weights, j = _sparse_topk(exact, params.topk, params.temperature, target_valid[start:stop])
            idx = cand.gather(-1, j)
        else:
            weights, idx = _sparse_topk(scores, params.topk, params.temperature, target_valid[start:stop])
        rows = tile_origin[start:stop].view(-1, 1, 1) + cell[idx]  # (T, th·tw, kk) rows of `labels`
        out[start:stop] = (weights.unsqueeze(-1) * labels[rows]).sum(-2)  # (T, th·tw, C)
    out = _finish(out, params.renormalise)
    out = out.view(lay.n_th, lay.n_tw, th, tw, c).permute(4, 0, 2, 1, 3).reshape(c, ph, pw)
    return out[:, :h, :w]


def _propagate_global(
    target: torch.Tensor, ctx_feats: torch.Tensor, ctx_labels: torch.Tensor, params: PropagationParams
) -> torch.Tensor:
    """Query-chunked full affinity (PRP-M3); with a radius, the window is applied as an additive mask. Used for
    the unrestricted mode and for grids so small that a window region would cover the whole grid anyway."""
    n_ctx, d, h, w = ctx_feats.shape
    c = ctx_labels.shape[1]
    hw = h * w
    src = ctx_feats.permute(1, 0, 2, 3).reshape(d, n_ctx * hw)  # (D, n_ctx·hw)
    labels = ctx_labels.permute(0, 2, 3, 1).reshape(n_ctx * hw, c)  # (n_ctx·hw, C)
    tgt = target.reshape(d, hw).T  # (hw, D)
    bias = None
    if params.radius is not None:
        allowed = dense_window_mask(h, w, int(params.radius), params.shape).to(target.device)  # (hw, hw)
        bias = torch.zeros(hw, 1, hw, device=target.device).masked_fill_(~allowed[:, None, :], float("-inf"))
    chunk = max(1, int(params.memory_budget_mb * 2**20 // (4 * 3 * n_ctx * hw)))
    out = torch.empty(hw, c, device=target.device)
    for i in range(0, hw, chunk):
        scores = tgt[i : i + chunk] @ src  # (q, n_ctx·hw)
        if bias is not None:
            scores = (scores.view(-1, n_ctx, hw) + bias[i : i + chunk]).view(-1, n_ctx * hw)
        weights, idx = _sparse_topk(scores, params.topk, params.temperature)  # (q, kk)
        out[i : i + chunk] = (weights.unsqueeze(-1) * labels[idx]).sum(-2)  # (q, C)
    return _finish(out, params.renormalise).T.reshape(c, h, w)


def propagate_frame(
    target: torch.Tensor, ctx_feats: torch.Tensor, ctx_labels: torch.Tensor, params: PropagationParams
) -> torch.Tensor:
    """Propagate context labels to one target frame.

    Args:
        target: ``(D, h, w)`` L2-normalised target features.
        ctx_feats: ``(n_ctx, D, h, w)`` L2-normalised context features.
        ctx_labels: ``(n_ctx, C, h, w)`` context label maps (one-hot or soft; ignore = all-zero).
        params: see :class:`PropagationParams`.

    Returns:
        ``(C, h, w)`` soft prediction (float32).
    """
    if ctx_feats.ndim != 4 or target.shape != ctx_feats.shape[1:]:
        raise ValueError(f"target {tuple(target.shape)} and contexts {tuple(ctx_feats.shape)} do not match")
    if ctx_labels.shape[0] != ctx_feats.shape[0] or ctx_labels.shape[2:] != ctx_feats.shape[2:]:
        raise ValueError(f"context labels {tuple(ctx_labels.shape)} do not match features {tuple(ctx_feats.shape)}")
    target, ctx_feats, ctx_labels = target.float(), ctx_feats.float(), ctx_labels.float()
    h, w = target.shape[-2:]
    if params.radius is None:
        return _propagate_global(target, ctx_feats, ctx_labels, params)
    reach = (2 * params.radius + params.tile) ** 2
    if h * w <= reach:  # a tile's region would hold the whole grid: the masked full affinity is cheaper and equal
        return _propagate_global(target, ctx_feats, ctx_labels, params)
    return _propagate_windowed(target, ctx_feats, ctx_labels, params)


class ContextPropagator:
    """Anchors (annotated frames, always in the context) plus a FIFO queue of recent soft predictions (§3 step 8).

    Entries are ``(frame index, features (D, h, w), labels (C, h, w))``; the index only serves bookkeeping (resume).
    Label channels may grow when a later anchor brings new ids (continuous re-anchoring): existing maps are padded
    with zero channels, so channel ``i`` keeps its meaning.
    """

    def __init__(self, params: PropagationParams, max_anchors: int | None = None) -> None:
        self.params = params
        self.max_anchors = max_anchors
        self.anchors: deque[tuple[int, torch.Tensor, torch.Tensor]] = deque(maxlen=max_anchors)
        self.queue: deque[tuple[int, torch.Tensor, torch.Tensor]] = deque(maxlen=max(params.n_last_frames, 1))

    def reset(self) -> None:
        self.anchors.clear()
        self.queue.clear()

    @property
    def num_channels(self) -> int:
        return self.anchors[-1][2].shape[0] if self.anchors else 0

    def _grow(self, c: int) -> None:
        for entries in (self.anchors, self.queue):
            for j, (i, f, lab) in enumerate(entries):
                entries[j] = (i, f, F.pad(lab, (0, 0, 0, 0, 0, c - lab.shape[0])))

    def add_anchor(self, features: torch.Tensor, labels: torch.Tensor, index: int = -1) -> None:
        """Add an annotated frame: ``features`` (D, h, w) normalised, ``labels`` (C, h, w) with C >= current C."""
        if labels.shape[0] < self.num_channels:
            raise ValueError(f"anchor has {labels.shape[0]} channels, fewer than the current {self.num_channels}")
        self._grow(labels.shape[0])
        self.anchors.append((index, features, labels.float().to(features.device)))

    def push(self, features: torch.Tensor, labels: torch.Tensor, index: int = -1) -> None:
        """Queue a predicted frame (done by :meth:`step`; public for restoring a saved context)."""
        if self.params.n_last_frames > 0:
            self.queue.append((index, features, labels.float().to(features.device)))

    def step(self, features: torch.Tensor, index: int = -1) -> torch.Tensor:
        """Predict one frame from the current context, then push it into the queue; returns ``(C, h, w)``."""
        if not self.anchors:
            raise RuntimeError("no anchor: add an annotated frame before propagating")
        entries = list(self.anchors) + list(self.queue)
        feats = torch.stack([f for _, f, _ in entries])  # (n_ctx, D, h, w)
        labels = torch.stack([lab for _, _, lab in entries])  # (n_ctx, C, h, w)
        pred = propagate_frame(features, feats, labels, self.params)
        queued = pred
        if self.params.hard_queue:
            mass = pred.sum(0, keepdim=True) > 0
            queued = F.one_hot(pred.argmax(0), pred.shape[0]).permute(2, 0, 1).float() * mass
        self.push(features, queued, index)
        return pred
