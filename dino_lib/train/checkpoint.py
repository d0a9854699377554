"""Training checkpoints in the reference layout, RNG states, resume, and the backbone-only teacher export.

Layout (the reference DINO one): ``student`` (keys ``module.backbone.*`` / ``module.head.*``), ``teacher``
(``backbone.*`` / ``head.*``), ``optimizer``, ``epoch`` (the epoch to continue with), ``dino_loss``
(``{"center": (1, K)}``), ``fp16_scaler`` (fp16 only), plus ``config`` (plain data, not a pickled Namespace),
``rng_state`` (Python, NumPy, torch, CUDA), ``iteration_in_epoch`` (sampler position: batches of ``epoch`` already
done), ``iteration`` (global), ``schema_version``. Files are written atomically; a kill during a write leaves the
previous file intact.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from dino_lib.runtime import cuda_available
from dino_lib.utils.io import atomic_torch_save, atomic_write, safe_torch_load

logger = logging.getLogger(__name__)

__all__ = [
    "SCHEMA_VERSION",
    "get_rng_state",
    "set_rng_state",
    "student_state_dict",
    "save_checkpoint",
    "load_checkpoint",
    "export_teacher_backbone",
    "save_safetensors",
]

SCHEMA_VERSION = 1


def get_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) generator states as plain data and tensors (weights_only-loadable)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if cuda_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` captured."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and cuda_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def student_state_dict(student: nn.Module) -> dict[str, torch.Tensor]:
    """The un-wrapped student's state dict with the DDP ``module.`` prefix of the reference files."""
    return {f"module.{k}": v for k, v in student.state_dict().items()}


def _strip_module(state: dict[str, Any]) -> dict[str, Any]:
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}


def save_checkpoint(state: dict[str, Any], run_dir: Path, epoch_done: int | None, saveckp_freq: int) -> Path:
    """Write ``checkpoint.pth`` (atomic) and, at the end of epoch ``epoch_done``, the periodic copy.

    Periodic copies follow the reference: ``checkpoint{epoch:04d}.pth`` when ``epoch % saveckp_freq == 0``
    (so epoch 0 is always kept).
    """
    path = atomic_torch_save(state, run_dir / "checkpoint.pth")
    if epoch_done is not None and saveckp_freq > 0 and epoch_done % saveckp_freq == 0:
        atomic_torch_save(state, run_dir / f"checkpoint{epoch_done:04d}.pth")
    return path


def load_checkpoint(
    path: Path,
    *,
    student: nn.Module,
    teacher: nn.Module,
    optimizer: torch.optim.Optimizer,
    dino_loss: nn.Module,
    scaler: Any | None = None,
) -> dict[str, Any]:
    """Restore every object from a training checkpoint (strictly: resuming into another model is an error).

    Returns:
        The remaining metadata: ``epoch``, ``iteration_in_epoch``, ``rng_state``, ``config``, ...
    """
    ckpt = safe_torch_load(path, map_location="cpu")
    missing = [k for k in ("student", "teacher", "optimizer", "epoch", "dino_loss") if k not in ckpt]
    if missing:
        raise ValueError(f"{path} is not a DINO training checkpoint: missing {missing}")
    try:
        student.load_state_dict(_strip_module(ckpt["student"]))
        teacher.load_state_dict(_strip_module(ckpt["teacher"]))
    except RuntimeError as err:
        raise ValueError(
            f"cannot resume from {path}: its model does not match this config ({err}). Use another output_dir "
            "for a different model, or the config stored in that run directory"
        ) from None
    optimizer.load_state_dict(ckpt["optimizer"])
    dino_loss.load_state_dict(ckpt["dino_loss"])
    if scaler is not None:
        if "fp16_scaler" in ckpt:
            scaler.load_state_dict(ckpt["fp16_scaler"])
        else:
            logger.warning("%s has no fp16_scaler state; the gradient scaler starts fresh", path)
    return ckpt


def save_safetensors(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> Path:
    """A flat dict of tensors as a ``.safetensors`` file (no pickle: loadable by any framework), written atomically."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    return atomic_write(path, lambda p: save_file(tensors, str(p), metadata=metadata))


def export_teacher_backbone(teacher: nn.Module, path: Path, *, safetensors: bool = False) -> Path:
    """Backbone-only teacher weights (released DINO layout: plain keys, no prefix, no head), written atomically.

    With ``safetensors`` the same tensors are also written beside ``path`` with the ``.safetensors`` suffix.
    """
    backbone = teacher.backbone if hasattr(teacher, "backbone") else teacher
    state = {k: v.detach().cpu().clone() for k, v in backbone.state_dict().items()}
    if safetensors:
        name = str(getattr(backbone, "backbone_name", type(backbone).__name__))
        save_safetensors(state, Path(path).with_suffix(".safetensors"), {"format": "pt", "arch": name})
    return atomic_torch_save(state, path)
