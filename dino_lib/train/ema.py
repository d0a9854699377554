"""EMA teacher update over parameters only (buffers are not averaged, as in the reference)."""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["EMA"]


class EMA:
    """``theta_t <- m * theta_t + (1 - m) * theta_s`` for parameters paired by name (buffers are not averaged).

    Args:
        student: the (un-wrapped) student.
        teacher: the teacher; must have exactly the same parameter names.

    Raises:
        ValueError: the parameter names differ.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module) -> None:
        s = dict(student.named_parameters())
        t = dict(teacher.named_parameters())
        if list(s) != list(t):
            only_s, only_t = sorted(set(s) - set(t)), sorted(set(t) - set(s))
            raise ValueError(
                f"student and teacher parameters differ: only in student {only_s[:5]}, only in teacher {only_t[:5]}"
            )
        self.names = list(s)
        self.student_params = [s[n] for n in self.names]
        self.teacher_params = [t[n] for n in self.names]

    @torch.no_grad()
    def update(self, momentum: float) -> None:
        t = [p.data for p in self.teacher_params]
        torch._foreach_mul_(t, momentum)
        torch._foreach_add_(t, [p.detach().data for p in self.student_params], alpha=1.0 - momentum)
