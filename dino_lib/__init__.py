"""dino_lib: DINO self-supervised Vision Transformers: pretraining, HIPT, evaluation, propagation, attention."""

__version__ = "0.1.0"
