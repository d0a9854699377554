"""The propagation core: sparse neighbourhood affinity, joint top-k, soft-label transfer (as in DINO's DAVIS protocol).

For one target frame with L2-normalised features ``F_t`` and context frames ``s`` (anchors plus the queue of recent
soft predictions) with features ``F_s`` and label maps ``L_s``:

1. score every context cell inside the target cell's window: ``cos(F_t[i], F_s[j])``;
2. keep the ``k`` largest scores over *all* contexts jointly, ties at the k-th value kept;
3. weights = softmax(score / τ) over the kept set, computed in log space (max subtracted) — equal to the
   reference's ``exp(s/τ)`` zeroed below the k-th value and column-normalised, without its overflow;
4. prediction = weighted sum of the context labels; optionally renormalised over the label mass so
   that ignore cells (all-zero label vectors) carry no vote (``zero_mass``).

The windowed path is tiled (:mod:`dino_lib.propagation.neighbourhood`), so no ``(hw, hw)`` matrix is ever built;
``radius=None`` is the unrestricted mode, computed in query chunks under the same memory budget.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dino_lib.propagation.neighbourhood import WindowShape, clipped_tiles, dense_window_mask

__all__ = ["PropagationParams", "propagate_frame", "ContextPropagator", "l2_normalise"]


@dataclass(frozen=True)
class PropagationParams:
    """Hyper-parameters of one propagation step (defaults: DINO v1's DAVIS protocol).

    Attributes:
        topk: neighbours kept jointly over all contexts.
        temperature: softmax temperature τ.
        radius: half-width of the neighbourhood in feature cells (``size_mask_neighborhood``); None = no window.
        shape: ``square`` (reference) or ``circle`` (CRW / DINOv3 notebook).
        n_last_frames: length of the queue of recent predictions.
        renormalise: divide each prediction by its label mass (ignore cells carry zero mass).
        hard_queue: queue argmax one-hot maps instead of soft ones.
        tile: target tile side in cells (speed/memory trade-off only; results do not depend on it).
        memory_budget_mb: bound for one copied row group of a context strip (windowed path) or one query chunk
            of scores (unrestricted path).
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
    number of candidates >= the k-th value, and entries below the k-th value get weight 0. ``rows``
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
    weights = torch.exp((vals - top) / temperature) * keep  # log-space softmax over the kept set
    return weights / weights.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(weights.dtype).tiny), idx


def _finish(pred: torch.Tensor, renormalise: bool) -> torch.Tensor:
    """Renormalise ``(..., C)`` predictions over the label mass; all-zero mass stays all-zero (predicts ignore)."""
    if not renormalise:
        return pred
    mass = pred.sum(dim=-1, keepdim=True)
    return torch.where(mass > 1e-6, pred / mass.clamp_min(1e-12), torch.zeros_like(pred))


def _take_rows(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``table[idx]`` for a 1-d or 2-d ``table``: ``index_select`` on the flat indices is several times faster on
    CPUs than advanced indexing, which dominated the bf16 re-scoring."""
    return table.index_select(0, idx.reshape(-1)).view(*idx.shape, *table.shape[1:])


def _propagate_windowed(
    target: torch.Tensor, ctx_feats: torch.Tensor, ctx_labels: torch.Tensor, params: PropagationParams
) -> torch.Tensor:
    """Tiled windowed propagation over regions clipped to the grid, never a full ``(hw, hw)`` matrix.

    Contexts are laid out ``(h, n_ctx, w, D)``: a column strip of it, copied once, holds every region of the tiles
    in that strip as a contiguous row range ``(region_h, n_ctx, region_w, D)``, so each tile costs one plain matmul
    against all contexts at once, with no per-tile gather of keys. Score rows then read ``(region_h, n_ctx,
    region_w)``, and one lookup table per tile maps a score column to the row of the features and labels.
    """
    n_ctx, d, h, w = ctx_feats.shape
    c = ctx_labels.shape[1]
    dev = target.device
    fast = params.score_dtype == "bfloat16"
    tiles = clipped_tiles(h, w, int(params.radius), params.shape, params.tile)  # type: ignore[arg-type]
    # No copy for contexts stacked by ContextPropagator (already in this layout); rows of (h·n_ctx·w, ·) are
    # addressed as (y·n_ctx + ctx)·w + x.
    src = ctx_feats.permute(2, 0, 3, 1).contiguous()  # (h, n_ctx, w, D) fp32, exact re-scoring reads it
    scan = src.to(torch.bfloat16) if fast else src  # what the region matmuls read
    src_rows = src.view(h * n_ctx * w, d)
    labels = ctx_labels.permute(2, 0, 3, 1).reshape(h * n_ctx * w, c)
    tgt = target.permute(1, 2, 0)  # (h, w, D) view; tiles are copied out of it
    grid_rows = (
        torch.arange(h, device=dev).view(-1, 1, 1) * (n_ctx * w)
        + torch.arange(n_ctx, device=dev).view(1, -1, 1) * w
        + torch.arange(w, device=dev).view(1, 1, -1)
    )  # (h, n_ctx, w) row index of every context cell
    # Strip copies are split into row groups so that one copy stays within the memory budget on huge grids.
    row_bytes = n_ctx * scan.element_size() * d * (2 * min(int(params.radius), w - 1) + params.tile)
    group_rows = max(1, int(params.memory_budget_mb * 2**20 // row_bytes))
    out = torch.empty(h, w, c, dtype=torch.float32, device=dev)
    block = scan[:0]
    block_y0 = block_y1 = block_x0 = -1
    for t in tiles:
        if t.x0 != block_x0 or t.ry1 > block_y1:
            # New strip, or the tile reaches past the copied rows: copy the next group of rows of the strip.
            block_x0, block_y0 = t.x0, t.ry0
            block_y1 = min(h, max(t.ry1, t.ry0 + group_rows))
            block = scan[block_y0:block_y1, :, t.rx0 : t.rx1].contiguous()
        nq, rh, rw = (t.y1 - t.y0) * (t.x1 - t.x0), t.ry1 - t.ry0, t.rx1 - t.rx0
        keys = block[t.ry0 - block_y0 : t.ry1 - block_y0].view(rh * n_ctx * rw, d)
        tgt_tile = tgt[t.y0 : t.y1, t.x0 : t.x1].reshape(nq, d)
        query = tgt_tile.to(torch.bfloat16) if fast else tgt_tile
        scores = (query @ keys.T).float()  # (nq, rh·n_ctx·rw)
        scores = scores.view(nq, rh, n_ctx, rw).add_(t.bias).view(nq, -1)  # -inf outside each target's window
        lut = grid_rows[t.ry0 : t.ry1, :, t.rx0 : t.rx1].reshape(-1)  # score column -> row of src/labels
        weights, rows = _tile_weights(scores, lut, tgt_tile, src_rows, params, fast)
        pred = torch.bmm(weights.unsqueeze(1), _take_rows(labels, rows)).view(t.y1 - t.y0, t.x1 - t.x0, c)
        out[t.y0 : t.y1, t.x0 : t.x1] = pred
    return _finish(out, params.renormalise).permute(2, 0, 1).contiguous()


def _tile_weights(
    scores: torch.Tensor,
    lut: torch.Tensor,
    tgt_tile: torch.Tensor,
    src_rows: torch.Tensor,
    params: PropagationParams,
    fast: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k weights of one tile's ``(nq, region)`` scores and the context rows they weigh, each ``(nq, kk)``.

    ``lut`` maps a score column to a row of ``src_rows`` (the fp32 context features) and of the labels.
    """
    if not fast:
        weights, idx = _sparse_topk(scores, params.topk, params.temperature)
        return weights, _take_rows(lut, idx)  # (nq, kk)
    # bf16 scores only pre-select candidates; the kept ones are re-scored exactly in fp32.
    m = params.topk + params.preselect_margin
    cand = scores.topk(min(m, scores.shape[-1]), dim=-1).indices  # (nq, m)
    rows = _take_rows(lut, cand)
    exact = (_take_rows(src_rows, rows) * tgt_tile.unsqueeze(1)).sum(-1)  # (nq, m)
    exact = exact.masked_fill(scores.gather(-1, cand).isneginf(), float("-inf"))  # outside the window
    weights, j = _sparse_topk(exact, params.topk, params.temperature)
    return weights, rows.gather(-1, j)


def _propagate_global(
    target: torch.Tensor, ctx_feats: torch.Tensor, ctx_labels: torch.Tensor, params: PropagationParams
) -> torch.Tensor:
    """Query-chunked full affinity; with a radius, the window is applied as an additive mask. Used for
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
    """Anchors (annotated frames, always in the context) plus a FIFO queue of recent soft predictions.

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
        # Stacked as (h, n_ctx, w, D), the layout the windowed core scores in: a plain copy for the channels-last
        # features the extractors return, and the (n_ctx, D, h, w) view below then needs no transposing copy.
        feats = torch.stack([f.permute(1, 2, 0) for _, f, _ in entries], dim=1).permute(1, 3, 0, 2)
        labels = torch.stack([lab for _, _, lab in entries])  # (n_ctx, C, h, w)
        pred = propagate_frame(features, feats, labels, self.params)
        queued = pred
        if self.params.hard_queue:
            mass = pred.sum(0, keepdim=True) > 0
            queued = F.one_hot(pred.argmax(0), pred.shape[0]).permute(2, 0, 1).float() * mass
        self.push(features, queued, index)
        return pred
