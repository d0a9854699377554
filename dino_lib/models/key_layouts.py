"""Re-key checkpoints of other ViT layouts into the model's own: DINOv2's native layout into timm's.

DINOv2 (Oquab et al., 2023, facebookresearch/dinov2) saves its ViTs with names that timm renamed when it ported
them:

* ``register_tokens`` (1, R, D) is timm's ``reg_token``; timm's register models keep no positional entry for the
  prefix tokens (``no_embed_class``), so the CLS position ``pos_embed[:, 0]`` is folded into ``cls_token``;
* SwiGLU blocks (ViT-g) call their layers ``mlp.w12`` (the packed gate and value projection) and ``mlp.w3``; timm
  calls them ``mlp.fc1`` / ``mlp.fc2`` (``SwiGLUPacked``) or splits ``w12`` into ``mlp.fc1_g`` / ``mlp.fc1_x``
  (``SwiGLU``; DINOv2 computes ``silu(first half) * second half``);
* training checkpoints with ``block_chunks`` nest blocks as ``blocks.<chunk>.<index>.``;
* ``mask_token`` is a training-only parameter (reported, never loaded).

Layer scale (``blocks.i.ls1.gamma``, ``ls2.gamma``) has the same name on both sides. Hugging Face ``transformers``
checkpoints of DINOv2 (``Dinov2Model``) and DINO (``ViTModel``, e.g. the hub's ``model.safetensors``) are first
renamed to DINOv2's layout by :func:`from_transformers` (separate q/k/v projections are concatenated into ``qkv``).
:func:`describe_state` reads the architecture of a state dict (width, depth, patch, registers, layer scale, SwiGLU,
positional grid) so errors can say which backbone to build.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn as nn

__all__ = ["adapt_layout", "describe_state", "positional_prefix", "suggest_arch", "from_transformers"]

_CHUNKED = re.compile(r"^blocks\.\d+\.(\d+)\.(.*)$")
_TIMM_DINOV2 = {384: "vit_small", 768: "vit_base", 1024: "vit_large", 1536: "vit_giant"}


_HF_LAYER = re.compile(r"^(?:encoder\.)?layer\.(\d+)\.(.+)$")
_HF_BLOCK = {
    "norm1.": "norm1.",
    "layernorm_before.": "norm1.",
    "norm2.": "norm2.",
    "layernorm_after.": "norm2.",
    "attention.output.dense.": "attn.proj.",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
    "mlp.fc1.": "mlp.fc1.",
    "mlp.fc2.": "mlp.fc2.",
    "mlp.weights_in.": "mlp.w12.",
    "mlp.weights_out.": "mlp.w3.",
    "intermediate.dense.": "mlp.fc1.",
    "output.dense.": "mlp.fc2.",
}
_HF_TOP = {
    "embeddings.cls_token": "cls_token",
    "embeddings.mask_token": "mask_token",
    "embeddings.register_tokens": "register_tokens",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}


def from_transformers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face ``Dinov2Model`` / ``ViTModel`` state dict to DINOv2's (= DINO's) layout.

    Other state dicts come back unchanged. Keys may carry the ``dinov2.`` / ``vit.`` prefix of the task models;
    the pooler and classifier are dropped by the loader as heads (``pooler.*`` is kept under its name).
    """
    for prefix in ("dinov2.", "vit."):
        if any(k.startswith(prefix + "embeddings.") for k in state):
            state = {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state.items()}
    if "embeddings.patch_embeddings.projection.weight" not in state:
        return state
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key in _HF_TOP:
            out[_HF_TOP[key]] = value
            continue
        match = _HF_LAYER.match(key)
        if not match:
            out[key] = value
            continue
        index, rest = int(match.group(1)), match.group(2)
        attn = re.match(r"^attention\.attention\.(query|key|value)\.(weight|bias)$", rest)
        if attn:
            qkv.setdefault((index, attn.group(2)), {})[attn.group(1)] = value
            continue
        for old, new in _HF_BLOCK.items():
            if rest.startswith(old):
                out[f"blocks.{index}.{new}{rest[len(old) :]}"] = value
                break
        else:
            out[f"blocks.{index}.{rest}"] = value  # unknown: reported as unexpected by the loader
    for (index, kind), parts in qkv.items():
        if set(parts) == {"query", "key", "value"}:
            out[f"blocks.{index}.attn.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]])
        else:
            out.update({f"blocks.{index}.attention.attention.{n}.{kind}": v for n, v in parts.items()})
    return out


def positional_prefix(model: nn.Module) -> int:
    """How many prefix tokens (CLS, registers) have an entry in the model's positional table."""
    if getattr(model, "no_embed_class", False):
        return 0
    return int(getattr(model, "num_prefix_tokens", 1))


def _grid_prefix(n_tokens: int) -> int:
    """Prefix entries of a square positional table of ``n_tokens`` rows (0 or 1 for the layouts we read)."""
    for prefix in (1, 0):
        side = math.isqrt(max(n_tokens - prefix, 0))
        if side > 0 and side * side == n_tokens - prefix:
            return prefix
    return 1


def _unchunk(state: dict[str, torch.Tensor], own: set[str]) -> dict[str, torch.Tensor]:
    if any(_CHUNKED.match(k) for k in own) or not any(_CHUNKED.match(k) for k in state):
        return state
    return {(f"blocks.{m.group(1)}.{m.group(2)}" if (m := _CHUNKED.match(k)) else k): v for k, v in state.items()}


def _swiglu(state: dict[str, torch.Tensor], own: set[str]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if ".mlp.w12." in key:
            packed = key.replace(".mlp.w12.", ".mlp.fc1.")
            gate = key.replace(".mlp.w12.", ".mlp.fc1_g.")
            if gate in own and packed not in own:
                g, x = value.chunk(2, dim=0)
                out[gate], out[key.replace(".mlp.w12.", ".mlp.fc1_x.")] = g, x
            else:
                out[packed] = value
        elif ".mlp.w3." in key:
            out[key.replace(".mlp.w3.", ".mlp.fc2.")] = value
        else:
            out[key] = value
    return out


def adapt_layout(state: dict[str, torch.Tensor], model: nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename and reshape DINOv2-native tensors to the names ``model`` uses; returns ``(state, notes)``.

    A state dict already in the model's layout comes back unchanged. The positional table keeps its grid (it is
    resampled afterwards by the loader); only prefix entries the model has no place for are folded away.
    """
    own = set(model.state_dict())
    notes: list[str] = []
    state = dict(state)
    unchunked = _unchunk(state, own)
    if unchunked is not state:
        notes.append("blocks.<chunk>.<i> -> blocks.<i>")
        state = unchunked
    if any(".mlp.w12." in k or ".mlp.w3." in k for k in state):
        state = _swiglu(state, own)
        notes.append("SwiGLU mlp.w12/w3 -> timm names")
    if "register_tokens" in state and "reg_token" in own:
        state["reg_token"] = state.pop("register_tokens")
        notes.append("register_tokens -> reg_token")
    pos, cls = state.get("pos_embed"), state.get("cls_token")
    if pos is not None and cls is not None and pos.dim() == 3 and "pos_embed" in own:
        theirs = _grid_prefix(pos.shape[1])
        if theirs == 1 and positional_prefix(model) == 0:
            state["cls_token"] = cls + pos[:, :1]
            state["pos_embed"] = pos[:, 1:]
            notes.append("CLS position folded into cls_token")
    return state, notes


def describe_state(state: dict[str, torch.Tensor]) -> dict[str, object]:
    """Architecture facts read from a ViT state dict (empty when it is not one)."""
    proj = state.get("patch_embed.proj.weight")
    if proj is None or proj.dim() != 4:
        return {}
    depth = 1 + max((int(m.group(1)) for k in state if (m := re.match(r"^blocks\.(?:\d+\.)?(\d+)\.", k))), default=-1)
    registers = state.get("register_tokens", state.get("reg_token"))
    pos = state.get("pos_embed")
    grid = None
    if pos is not None and pos.dim() == 3:
        n = pos.shape[1] - _grid_prefix(pos.shape[1])
        grid = math.isqrt(n)
    return {
        "embed_dim": int(proj.shape[0]),
        "patch_size": int(proj.shape[-1]),
        "depth": depth,
        "registers": 0 if registers is None else int(registers.shape[1]),
        "layer_scale": any(k.endswith("ls1.gamma") for k in state),
        "swiglu": any(".mlp.w12." in k or ".mlp.fc1_g." in k for k in state),
        "pos_grid": grid,
    }


def suggest_arch(facts: dict[str, object]) -> str | None:
    """A ``build_backbone`` name that fits a described state dict, when one is obvious."""
    if not facts:
        return None
    dim, patch, regs = facts["embed_dim"], facts["patch_size"], facts["registers"]
    if facts["layer_scale"] and dim in _TIMM_DINOV2:
        reg = f"_reg{regs}" if regs else ""
        return f"timm:{_TIMM_DINOV2[dim]}_patch{patch}{reg}_dinov2"  # type: ignore[index]
    sizes = {192: "vit_tiny", 384: "vit_small", 768: "vit_base"}
    if dim in sizes and not regs:
        return f"{sizes[dim]}_patch{patch}"  # type: ignore[index]
    return None
