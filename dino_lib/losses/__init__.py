"""Self-supervised losses (one concept per module)."""

from dino_lib.losses.dino_loss import DINOLoss, teacher_temp_schedule

__all__ = ["DINOLoss", "teacher_temp_schedule"]
