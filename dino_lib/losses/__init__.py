"""Self-supervised losses (one concept per module)."""

from dino_lib.losses.dino_loss import DINOLoss, teacher_temp_schedule
from dino_lib.losses.koleo import koleo_loss

__all__ = ["DINOLoss", "koleo_loss", "teacher_temp_schedule"]
