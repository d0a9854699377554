"""TrainConfig: every key of the reference DINO trainer plus dino_lib extras and launcher keys.

Key names follow the reference arguments so its users find their way (``use_fp16`` is replaced by
``precision``). YAML parameter sets live in ``params/pretrain/``; the resolved config is written to
``RUN_DIR/config.yaml``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from dino_lib.config import ConfigError, param
from dino_lib.losses.dino_loss import CENTER_MOMENTUM, CENTERINGS, STUDENT_TEMP
from dino_lib.runtime.precision import PRECISION_CHOICES

__all__ = ["TrainConfig", "SlurmConfig"]

_VIT = re.compile(r"^(vit_tiny|vit_small|vit_base)(_patch\d+)?$")


@dataclass
class SlurmConfig:
    """Slurm job settings for ``launcher: slurm`` (submitit)."""

    nodes: int = param(1, ge=1, help="number of nodes")
    gpus_per_node: int = param(8, ge=0, help="GPUs (= tasks) per node; 0 runs one CPU task per node")
    partition: str = param("", help="Slurm partition ('' = cluster default)")
    time_min: int = param(2800, ge=1, help="time limit in minutes")
    cpus_per_task: int = param(10, ge=1)
    mem_gb_per_gpu: int = param(40, ge=1)
    constraint: str = param("", help="e.g. volta32gb")
    account: str = param("")
    comment: str = param("")
    max_num_timeout: int = param(20, ge=0, help="requeues after preemption/timeout before giving up")
    folder: str = param("", help="submitit log folder ('' = RUN_DIR/slurm)")
    executor: str = param("slurm", choices=("slurm", "local"), help="'local' runs the job here (tests)")
    dry_run: bool = param(False, help="print the job that would be submitted and return")


@dataclass
class TrainConfig:
    """DINO pretraining parameters (defaults = the reference DINO trainer's command-line defaults)."""

    # model
    arch: str = param("vit_small", help="vit_tiny|vit_small|vit_base[_patchN], torchvision name or timm:<name>")
    patch_size: int = param(16, ge=1)
    arch_kwargs: dict = field(default_factory=dict)
    out_dim: int = param(65536, ge=1)
    norm_last_layer: bool = True
    momentum_teacher: float = param(0.996, ge=0.0, le=1.0)
    use_bn_in_head: bool = False
    head_hidden_dim: int = param(2048, ge=1)
    head_bottleneck_dim: int = param(256, ge=1)
    head_nlayers: int = param(3, ge=1)
    drop_path_rate: float = param(0.1, ge=0.0, lt=1.0)
    # continued pretraining
    init_weights: str | None = param(None, help="start both backbones from this checkpoint (.pth/.safetensors)")
    init_checkpoint_key: str = param("teacher", help="network taken from a training checkpoint (teacher|student)")
    init_head: bool = param(False, help="also start the heads (and the centre) from init_weights' head")
    # temperatures
    warmup_teacher_temp: float = param(0.04, gt=0.0)
    teacher_temp: float = param(0.04, gt=0.0)
    warmup_teacher_temp_epochs: int = param(0, ge=0)
    student_temp: float = param(STUDENT_TEMP, gt=0.0)
    center_momentum: float = param(CENTER_MOMENTUM, ge=0.0, le=1.0)
    teacher_centering: str = param(
        "center",
        choices=CENTERINGS,
        help="'center': the paper's running center; 'sinkhorn_knopp': equal use of the prototypes per batch (DINOv2)",
    )
    koleo_weight: float = param(
        0.0, ge=0.0, help="weight of the KoLeo term on the student's global-crop features (DINOv2: 0.1; 0 = off)"
    )
    # optimisation
    precision: str = param(
        "auto",
        choices=PRECISION_CHOICES,
        help="auto: bf16 on GPUs that have it (else fp16) and on CPUs with native bf16, fp32 otherwise",
    )
    weight_decay: float = param(0.04, ge=0.0)
    weight_decay_end: float = param(0.4, ge=0.0)
    clip_grad: float = param(3.0, ge=0.0)
    batch_size_per_gpu: int = param(64, ge=1)
    epochs: int = param(100, ge=1)
    freeze_last_layer: int = param(1, ge=0)
    lr: float = param(0.0005, ge=0.0)
    warmup_epochs: int = param(10, ge=0)
    min_lr: float = param(1e-6, ge=0.0)
    optimizer: str = param("adamw", choices=("adamw", "sgd", "lars"))
    accumulate_steps: int = param(1, ge=1, help="split each batch into N micro-batches (one update per batch)")
    grad_checkpointing: bool = param(False, help="recompute block activations in the backward (less memory)")
    # multi-crop
    global_crops_scale: list[float] = field(default_factory=lambda: [0.4, 1.0])
    local_crops_number: int = param(8, ge=0)
    local_crops_scale: list[float] = field(default_factory=lambda: [0.05, 0.4])
    global_crops_size: int = param(224, ge=8)
    local_crops_size: int = param(96, ge=8)
    normalization: str = param(
        "imagenet", choices=("imagenet", "hipt"), help="input normalisation, recorded for feature extraction"
    )
    augmentation: str = param(
        "pil",
        choices=("pil", "batched"),
        help="pil: the reference per-image pipeline; batched: the crops of a whole batch with tensor ops on the "
        "training device (docs/pretraining.md, Batched augmentation)",
    )
    batched_base_size: int | None = param(
        None,
        ge=8,
        help="batched: side S of the square base image the crops are cut from (shorter side resized to S, centre "
        "crop); null = global_crops_size",
    )
    # data and task
    task: str = param("images", help="registered training task (dino_lib.train.tasks.TASKS)")
    region: dict = field(default_factory=dict)
    data_path: str = param("sample:images", help="image folder or sample:<name>")
    max_images: int | None = param(None, gt=0, help="use only the first N images (sorted order); null = all")
    check_images: str = param(
        "auto",
        choices=("auto", "decode", "open", "off"),
        help="before training: decode every image, read headers only, or nothing; auto = decode up to 5000 images",
    )
    skip_corrupt_images: bool = param(False, help="skip unreadable images (counted, named in warnings)")
    num_workers: int = param(10, ge=0)
    # run
    output_dir: str = param("runs/pretrain", help="RUN_DIR; resumed automatically when it holds checkpoint.pth")
    saveckp_freq: int = param(20, ge=0)
    checkpoint_every_iters: int = param(0, ge=0, help="also checkpoint inside an epoch every N iterations")
    seed: int = 0
    device: str = param("auto", help="auto | cpu | cuda | cuda:N")
    log_every: int = param(10, ge=1, help="iterations between log.jsonl records")
    tensorboard: bool = param(False, help="also write TensorBoard scalars and images to RUN_DIR/tb/")
    export_safetensors: bool = param(False, help="also export the teacher backbone as teacher_backbone.safetensors")
    knn_every: int = param(0, ge=0, help="epochs between k-NN monitors (0 = off)")
    knn_data_path: str | None = None
    knn_resize: int = param(256, ge=8, help="k-NN monitor: resize side before the centre crop")
    knn_crop: int = param(224, ge=8, help="k-NN monitor: centre-crop side")
    collapse_patience: int = param(3, ge=1, help="epochs near ln K before the collapse warning")
    dist_timeout_s: float = param(600.0, gt=0.0)
    # launcher
    launcher: str = param("local", choices=("local", "torchrun", "slurm"))
    nproc_per_node: int = param(1, ge=1)
    nnodes: int = param(1, ge=1)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)

    def validate(self) -> None:
        """Cross-field checks (single fields are checked from their annotations and bounds)."""
        for key in ("global_crops_scale", "local_crops_scale"):
            lo_hi = getattr(self, key)
            if len(lo_hi) != 2 or not (0.0 < lo_hi[0] <= lo_hi[1] <= 1.0):
                raise ConfigError(f"{key}: expected [min, max] with 0 < min <= max <= 1, found {lo_hi}")
        if self.warmup_teacher_temp_epochs > self.epochs:
            raise ConfigError(
                f"warmup_teacher_temp_epochs ({self.warmup_teacher_temp_epochs}) must be <= epochs ({self.epochs})"
            )
        if self.warmup_epochs > self.epochs:
            raise ConfigError(f"warmup_epochs ({self.warmup_epochs}) must be <= epochs ({self.epochs})")
        if self.batch_size_per_gpu % self.accumulate_steps:
            raise ConfigError(
                f"accumulate_steps ({self.accumulate_steps}) must divide batch_size_per_gpu "
                f"({self.batch_size_per_gpu}): each batch is split into equal micro-batches"
            )
        if self.init_head and not self.init_weights:
            raise ConfigError("init_head: true needs init_weights (a checkpoint with a head)")
        self._validate_augmentation()
        if self.knn_every and not self.knn_data_path:
            raise ConfigError("knn_every > 0 needs knn_data_path (e.g. sample:labelled)")
        if self.task == "images" and not (_VIT.match(self.arch) or self.arch.startswith("timm:")):
            import torchvision

            if self.arch not in torchvision.models.list_models(module=torchvision.models):
                raise ConfigError(
                    f"arch: unknown architecture {self.arch!r}; expected vit_tiny, vit_small, vit_base "
                    "(optionally _patch8/_patch16), a torchvision model name (e.g. resnet50) or timm:<name>"
                )

    def _validate_augmentation(self) -> None:
        if self.augmentation == "pil":  # batched_base_size is ignored, so switching back needs no other change
            return
        if self.task != "images":
            raise ConfigError(
                f"augmentation: {self.augmentation} works with task: images only, found task: {self.task}"
            )
        largest = max(self.global_crops_size, self.local_crops_size)
        if self.base_size < largest:
            shown = f"{self.base_size}{' = global_crops_size' if self.batched_base_size is None else ''}"
            raise ConfigError(
                f"batched_base_size ({shown}) must be >= the largest crop size ({largest}): the crops are cut from "
                "the base image"
            )

    @property
    def base_size(self) -> int:
        """Side of the batched augmentation's base image (``batched_base_size``, else ``global_crops_size``)."""
        return self.batched_base_size or self.global_crops_size

    @property
    def ncrops(self) -> int:
        return 2 + self.local_crops_number

    @property
    def ln_k(self) -> float:
        """ln K: the loss of uniform teacher targets (the flat-loss collapse level)."""
        return math.log(self.out_dim)

    @property
    def is_vit(self) -> bool:
        return bool(_VIT.match(self.arch)) or self.arch.startswith("timm:vit")
