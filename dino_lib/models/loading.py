"""Load backbone weights from a local checkpoint file, strictly, with a report (docs/models.md).

Formats recognised:

* released DINO backbone-only weights: a plain state dict (150 keys for a ViT);
* full DINO training checkpoints: ``{"student": ..., "teacher": ..., "optimizer": ..., "args": Namespace, ...}``
  with ``module.`` / ``backbone.`` prefixes and ``head.*`` keys; ``checkpoint_key`` picks teacher or student;
* MAE checkpoints: ``{"model": ...}`` with encoder and ``decoder_*`` / ``mask_token`` keys (encoder kept);
* timm / generic checkpoints: a plain state dict or ``{"state_dict": ...}`` / ``{"model": ...}``;
* DINOv2 checkpoints in DINOv2's own layout (register tokens, layer scale, SwiGLU, chunked blocks, ``dino_head`` /
  ``ibot_head``, ``teacher.backbone.`` prefixes), re-keyed into timm's DINOv2 models by
  :mod:`dino_lib.models.key_layouts`;
* Hugging Face ``transformers`` DINOv2 (``Dinov2Model``) and DINO (``ViTModel``) checkpoints, renamed likewise.

Files may be ``.pth``, ``.pt``, ``.bin`` (torch pickles, read with ``weights_only=True``) or ``.safetensors``.
The positional table's grid is read from the tensor and resampled to the model's when they differ.

Unlike the reference (which loads with ``strict=False`` and downloads weights when the path is missing), a
missing file is an error, nothing is downloaded, and anything beyond the head that is missing makes loading fail.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from dino_lib.models.key_layouts import (
    adapt_layout,
    describe_state,
    from_transformers,
    positional_prefix,
    suggest_arch,
)
from dino_lib.models.pos_embed import interpolate_pos_embed
from dino_lib.utils.io import safe_torch_load

__all__ = ["LoadReport", "CheckpointError", "load_pretrained", "extract_state_dict", "state_dict_hash"]

# Keys that belong to heads, decoders or training-only parts; reported, never loaded into a backbone.
_IGNORABLE_PREFIXES = (
    "head.",
    "fc.",
    "classifier.",
    "decoder",
    "mask_token",
    "fc_norm.",
    "last_layer.",
    "dino_head.",
    "ibot_head.",
    "pooler.",
)
_PREFIXES_TO_STRIP = ("module.", "backbone.", "encoder.")


class CheckpointError(ValueError):
    """A checkpoint does not fit the model; the message names the file, the mismatch and the fix."""


@dataclasses.dataclass
class LoadReport:
    """What :func:`load_pretrained` did."""

    path: str
    source_key: str | None
    loaded: int
    missing: list[str]
    unexpected: list[str]
    ignored: list[str]
    resampled: list[str]

    def __str__(self) -> str:
        parts = [
            f"loaded {self.loaded} tensors from {self.path}" + (f" [{self.source_key}]" if self.source_key else "")
        ]
        if self.missing:
            parts.append(f"missing: {self.missing}")
        if self.unexpected:
            parts.append(f"unexpected: {self.unexpected}")
        if self.ignored:
            parts.append(f"ignored (head/decoder): {len(self.ignored)} keys")
        if self.resampled:
            parts.append(f"resampled: {self.resampled}")
        return "; ".join(parts)


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES_TO_STRIP:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                changed = True
    return key


def extract_state_dict(
    checkpoint: Any, checkpoint_key: str | None = "teacher", path: str = ""
) -> tuple[dict, str | None]:
    """Find the backbone state dict inside a loaded checkpoint and strip DDP/wrapper prefixes.

    Returns:
        ``(state_dict, key_used)`` where ``key_used`` is the top-level key the weights came from (or None).
    """
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors or a training checkpoint, found {type(checkpoint)}")
    source = None
    if checkpoint_key and checkpoint_key in checkpoint and isinstance(checkpoint[checkpoint_key], dict):
        source = checkpoint_key
    elif checkpoint_key and ("teacher" in checkpoint or "student" in checkpoint):
        # a training checkpoint: never fall back silently to another network than the one asked for
        raise CheckpointError(f"{path}: checkpoint_key {checkpoint_key!r} not found; it holds {sorted(checkpoint)}")
    else:
        for candidate in ("model", "state_dict", "teacher"):
            if candidate in checkpoint and isinstance(checkpoint[candidate], dict):
                source = candidate
                break
    state = checkpoint[source] if source else checkpoint
    nested = f"{checkpoint_key}." if checkpoint_key else None
    if nested and any(k.startswith(nested) for k in state):  # DINOv2 "model": teacher.backbone.* / student.*
        state = {k[len(nested) :]: v for k, v in state.items() if k.startswith(nested)}
        source = f"{source}/{checkpoint_key}" if source else checkpoint_key
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path}: no tensors found (top-level keys: {sorted(checkpoint)[:20]})")
    return {_strip_prefixes(k): v for k, v in tensors.items()}, source


def _check_values(model: nn.Module, state: dict[str, torch.Tensor], path: str) -> None:
    """Refuse weights that would load silently but compute garbage: non-finite values or non-float parameters.

    A checkpoint saved after the loss diverged holds NaN everywhere; loaded as is it gives chance-level features
    with no error anywhere downstream, so it is rejected here with the names of the affected tensors.
    """
    own = model.state_dict()
    wrong_dtype = [
        f"{k} ({v.dtype})"
        for k, v in state.items()
        if k in own and own[k].is_floating_point() and not (v.is_floating_point() or v.is_complex())
    ]
    if wrong_dtype:
        raise CheckpointError(
            f"{path}: tensors {wrong_dtype[:5]}{'...' if len(wrong_dtype) > 5 else ''} are not floating point but "
            "the model's are; the file does not hold model weights (check the file and checkpoint_key)"
        )
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(
            f"{path}: {len(bad)} tensor(s) hold NaN or Inf values ({', '.join(bad[:5])}{'...' if len(bad) > 5 else ''})"
            "; the checkpoint was saved after training diverged or is damaged. Use an earlier checkpoint"
        )


def _check_shapes(model: nn.Module, state: dict[str, torch.Tensor], path: str) -> list[str]:
    """Raise on patch-size / width mismatches; resample a positional table of another grid. Returns resampled keys."""
    own = model.state_dict()
    resampled = []
    proj = "patch_embed.proj.weight"
    if proj in own and proj in state and own[proj].shape != state[proj].shape:
        mine, theirs = own[proj].shape, state[proj].shape
        if mine[-1] != theirs[-1]:
            raise CheckpointError(
                f"{path}: checkpoint has patch size {theirs[-1]}, the model has patch size {mine[-1]}; "
                f"build the backbone with patch_size={theirs[-1]}"
            )
        raise CheckpointError(
            f"{path}: checkpoint has embedding size {theirs[0]}, the model has {mine[0]}; pick the matching arch "
            "(vit_tiny 192, vit_small 384, vit_base 768)"
        )
    for key, value in state.items():
        if key not in own or own[key].shape == value.shape:
            continue
        if key == "pos_embed" and own[key].shape[-1] == value.shape[-1]:
            prefix = positional_prefix(model)
            n = own[key].shape[1] - prefix
            side = int(round(n**0.5))
            state[key] = interpolate_pos_embed(value, (side, side), num_prefix_tokens=prefix, mode="size")
            resampled.append(key)
            continue
        raise CheckpointError(
            f"{path}: tensor {key!r} has shape {tuple(value.shape)} in the checkpoint but {tuple(own[key].shape)} "
            "in the model; the checkpoint belongs to another architecture (check arch and patch_size)"
        )
    return resampled


def _arch_hint(facts: dict[str, object], model: nn.Module) -> str:
    """One sentence naming the architecture the checkpoint holds and a backbone name that would fit it."""
    if not facts:
        return ""
    text = (
        f"The checkpoint holds a ViT of width {facts['embed_dim']}, depth {facts['depth']}, patch "
        f"{facts['patch_size']}, {facts['registers']} register tokens, layer scale {facts['layer_scale']}, SwiGLU "
        f"{facts['swiglu']}, positional grid {facts['pos_grid']}; the model is "
        f"{getattr(model, 'backbone_name', type(model).__name__)}. "
    )
    arch = suggest_arch(facts)
    return text + (f"Build it with arch {arch!r}. " if arch else "")


def load_pretrained(
    model: nn.Module,
    path: str | Path,
    *,
    checkpoint_key: str | None = "teacher",
    strict: bool = True,
) -> LoadReport:
    """Load weights from a local file into ``model`` and return a :class:`LoadReport`.

    Args:
        model: a backbone from :func:`dino_lib.models.build_backbone`.
        path: local checkpoint file (never downloaded): ``.pth``, ``.pt``, ``.bin`` or ``.safetensors``.
        checkpoint_key: top-level key to take in a training checkpoint (``teacher`` or ``student``).
        strict: fail when any model tensor is missing or any checkpoint tensor beyond heads/decoders is left over.

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointError: wrong format, patch size, embedding size or missing keys.
    """
    path = Path(path)
    checkpoint = safe_torch_load(path)
    state, source = extract_state_dict(checkpoint, checkpoint_key, str(path))
    state = from_transformers(state)
    ignored = sorted(k for k in state if k.startswith(_IGNORABLE_PREFIXES))
    state = {k: v for k, v in state.items() if k not in ignored}
    facts = describe_state(state)
    state, _ = adapt_layout(state, model)
    _check_values(model, state, str(path))
    try:
        resampled = _check_shapes(model, state, str(path))
    except CheckpointError as err:
        raise CheckpointError(f"{err}. {_arch_hint(facts, model)}".rstrip()) from None
    own_keys = set(model.state_dict())
    missing = sorted(own_keys - set(state))
    unexpected = sorted(set(state) - own_keys)
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{path}: does not match the model{f' (key {source!r})' if source else ''}: "
            f"missing {missing[:10]}{'...' if len(missing) > 10 else ''} ({len(missing)}), "
            f"unexpected {unexpected[:10]}{'...' if len(unexpected) > 10 else ''} ({len(unexpected)}). "
            f"{_arch_hint(facts, model)}Check arch/patch_size and checkpoint_key, or pass strict=False to load what "
            "matches."
        )
    result = model.load_state_dict({k: v for k, v in state.items() if k in own_keys}, strict=False)
    if result.missing_keys and strict:  # pragma: no cover - guarded above
        raise CheckpointError(f"{path}: missing keys {result.missing_keys}")
    return LoadReport(
        path=str(path),
        source_key=source,
        loaded=len(own_keys) - len(missing),
        missing=missing,
        unexpected=unexpected,
        ignored=ignored,
        resampled=resampled,
    )


def state_dict_hash(model_or_state: nn.Module | dict[str, torch.Tensor], length: int = 16) -> str:
    """A stable content hash of weights (names, shapes, dtypes and values), for cache keys and manifests."""
    import hashlib

    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().to("cpu").contiguous()
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
        # reshape(-1): 0-dim tensors (e.g. BatchNorm's num_batches_tracked) cannot be viewed as bytes directly
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:length]
