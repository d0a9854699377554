"""Propagate labels through every video of a dataset: the frame loop, manifest, timings and resume.

Keyframe policies are in :mod:`dino_lib.propagation.policies`. Keyframes are written as a copy of their label (as
both references do) and listed in the manifest (``label_frames``), so metrics can exclude them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dino_lib.config import run_metadata, to_dict
from dino_lib.data.decode import check_images
from dino_lib.data.samples import resolve_data_path
from dino_lib.propagation import outputs, policies
from dino_lib.propagation.backbones import FeatureExtractor, build_extractor
from dino_lib.propagation.config import PropagationConfig
from dino_lib.propagation.core import ContextPropagator, PropagationParams
from dino_lib.propagation.features import FeatureCache, FeatureProvider, extractor_key
from dino_lib.propagation.geometry import decode_prediction, resize_geometry
from dino_lib.propagation.io import (
    PropagationInputError,
    VideoRun,
    check_frame_sizes,
    davis_videos,
    driving_runs,
)
from dino_lib.propagation.labels import encode_labels
from dino_lib.propagation.parity import davis_geometry, parity_decode
from dino_lib.propagation.video import VideoLabels, check_first_label
from dino_lib.runtime import resolve_device, resolve_precision
from dino_lib.utils.progress import progress_bar

__all__ = ["RunResult", "propagate", "propagate_video", "list_videos", "extractor_from_config", "summary"]

logger = logging.getLogger(__name__)

# Parameters that never change predictions (left out of the resume key).
_EXECUTION_ONLY = {
    "data_path",
    "runs",
    "output_dir",
    "max_frames",
    "device",
    "batch_size",
    "feature_cache",
    "feature_cache_dir",
    "tile_size",
    "memory_budget_mb",
    "resume",
    "overwrite",
    "save_probs",
    "precision",  # the resolved precision enters the key instead (auto may differ between machines)
}


def run_precision(cfg: PropagationConfig, device: torch.device) -> str:
    """The precision of the backbone and the window scores: fp32 in parity mode (the reference), else resolved."""
    if cfg.protocol == "davis_parity":
        return "fp32"
    return resolve_precision(cfg.precision, device)


@dataclass
class RunResult:
    """What one video produced."""

    name: str
    out_dir: Path
    written: int
    skipped: int
    label_frames: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    frames: list[Path] = field(default_factory=list)
    label_paths: list[Path | None] = field(default_factory=list)

    @property
    def predictions(self) -> list[Path]:
        """``OUT/<run>/<frame stem>.png`` for every frame, in order."""
        return [self.out_dir / f"{p.stem}.png" for p in self.frames]


def summary(results: list[RunResult]) -> Any:
    """One row per video (pandas DataFrame): frames written/skipped, keyframes, timings."""
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "run": r.name,
                "written": r.written,
                "skipped": r.skipped,
                "keyframes": len(r.label_frames),
                **{k: round(v, 3) for k, v in r.timings.items()},
            }
            for r in results
        ]
    )


# The configuration keys that :func:`build_extractor` takes under the same name.
_EXTRACTOR_KEYS = (
    "patch_size",
    "pretrained_weights",
    "checkpoint_key",
    "layer",
    "cnn_stage",
    "mae_pos_embed",
    "model_kwargs",
    "seed",
)


def extractor_from_config(cfg: PropagationConfig) -> FeatureExtractor:
    """The configuration's backbone: :func:`build_extractor` of ``cfg.arch`` with the keys above."""
    return build_extractor(cfg.arch, **{key: getattr(cfg, key) for key in _EXTRACTOR_KEYS})


def list_videos(cfg: PropagationConfig) -> list[VideoRun]:
    root = resolve_data_path(cfg.data_path)
    if cfg.dataset == "davis":
        return davis_videos(root, resolution=cfg.davis_resolution, split=cfg.davis_split, videos=cfg.runs)
    return driving_runs(root, cfg.runs)


@dataclass
class _Frames:
    """One video's frame loop: its labels, features, propagator and resume state, and what it has done so far."""

    cfg: PropagationConfig
    run: VideoRun
    video: VideoLabels
    provider: FeatureProvider
    prop: ContextPropagator
    state_store: outputs.ResumeState
    key: str
    keyframes: set[int]
    native: Any
    geometry: Any
    parity: bool
    channel_ids: list[int] = field(default_factory=list)
    written: int = 0
    skipped: int = 0
    t_prop: float = 0.0
    t_write: float = 0.0


def propagate_video(
    cfg: PropagationConfig, run: VideoRun, extractor: FeatureExtractor, out_root: Path, device: torch.device
) -> RunResult:
    """Propagate one video; resumable (frames already written under a matching manifest are skipped)."""
    native = check_frame_sizes(run, cfg.frame_size_mismatch)  # type: ignore[arg-type]
    if cfg.max_frames is not None:
        run = VideoRun(run.name, run.frames[: cfg.max_frames], run.labels, run.label_dir)
    n = len(run.frames)
    parity = cfg.protocol == "davis_parity"
    geometry = (
        davis_geometry(native, extractor.stride)
        if parity
        else resize_geometry(native, extractor.stride, cfg.short_side)
    )
    out_dir = out_root / run.name
    video = VideoLabels(cfg, run, geometry, out_dir)
    keyframes, segments = policies.keyframes(cfg, n), policies.segments(cfg, n)
    for k in keyframes:  # fail before any work when a keyframe label is missing
        run.label_path(k)
    if not video.prob_classes:  # instance mode: object ids 0..N of the first label
        first = video.label(0)
        video.prob_classes = list(range(int(first[first != cfg.ignore_id].max(initial=0)) + 1))

    precision = run_precision(cfg, device)
    params = {k: v for k, v in to_dict(cfg).items() if k not in _EXECUTION_ONLY}
    params["precision"] = precision
    key = outputs.params_key({"params": params, "backbone": extractor.describe(), "geometry": geometry.to_dict()})
    state_store = _resume_store(cfg, out_dir, key)
    provider, cache = _feature_provider(cfg, extractor, run, geometry, device, precision, out_root)
    prop = ContextPropagator(
        _propagation_params(cfg, precision), cfg.max_anchors if cfg.resolved_policy == "continuous" else None
    )
    label_frames = [run.frames[k].stem for k in keyframes]
    manifest = _start_manifest(cfg, run, extractor, geometry, video, key, label_frames)
    outputs.write_manifest(out_dir, manifest)

    job = _Frames(cfg, run, video, provider, prop, state_store, key, set(keyframes), native, geometry, parity)
    t_start = time.perf_counter()
    _run_frames(job, segments)
    timings = _timings(job, time.perf_counter() - t_start, cache)
    from dino_lib.runtime.perf import peak_rss_mb

    manifest.update(
        status="complete",
        timings=timings,
        peak_rss_mb=peak_rss_mb(),
        written=job.written,
        skipped=job.skipped,
        peak_cuda_mb=torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
    )
    outputs.write_manifest(out_dir, manifest)
    labels = [run.labels.get(p.stem) for p in run.frames]
    return RunResult(run.name, out_dir, job.written, job.skipped, label_frames, timings, list(run.frames), labels)


def _timings(job: _Frames, wall: float, cache: FeatureCache | None) -> dict[str, float]:
    """Seconds spent per stage of one video, its frame rate and how many frames needed the backbone."""
    return {
        "wall_s": wall,
        "feature_s": job.provider.seconds,
        "propagation_s": job.t_prop,
        "decode_write_s": job.t_write,
        "frames_per_s": job.written / wall if wall > 0 else 0.0,
        "frames_extracted": job.provider.extracted,
        "cache_hits": cache.hits if cache else 0,
    }


def _resume_store(cfg: PropagationConfig, out_dir: Path, key: str) -> outputs.ResumeState:
    """The resume state of ``out_dir`` (cleared unless resuming); refuses a folder written with other parameters."""
    old = outputs.read_manifest(out_dir)
    resume = cfg.resume and not cfg.overwrite
    if old is not None and old.get("status") == "running":
        logger.warning(
            "%s: the previous run into this folder stopped before finishing (manifest status 'running'); %s",
            out_dir,
            "resuming it" if resume else "starting again (resume: false or overwrite: true)",
        )
    if old is not None and old.get("params_key") != key and not cfg.overwrite:
        raise PropagationInputError(
            f"{out_dir} holds predictions made with other parameters (manifest params_key {old.get('params_key')} "
            f"!= {key}); choose another output_dir or set overwrite: true"
        )
    state_store = outputs.ResumeState(out_dir)
    if not resume:
        state_store.clear()
    return state_store


def _feature_provider(
    cfg: PropagationConfig,
    extractor: FeatureExtractor,
    run: VideoRun,
    geometry: Any,
    device: torch.device,
    precision: str,
    out_root: Path,
) -> tuple[FeatureProvider, FeatureCache | None]:
    """The per-frame features of ``run`` (through the on-disk cache when enabled) and that cache."""
    parity = cfg.protocol == "davis_parity"
    pre = {"geometry": geometry.to_dict(), "precision": precision, "parity": parity}
    cache = None
    if cfg.feature_cache:
        root = Path(cfg.feature_cache_dir) if cfg.feature_cache_dir else out_root / ".feature_cache"
        cache = FeatureCache(root, extractor_key(extractor, pre), cfg.cache_dtype)
    provider = FeatureProvider(
        extractor,
        run.frames,
        geometry,
        device=device,
        precision=precision,
        batch_size=cfg.batch_size,
        cache=cache,
        antialias=not parity,
        round_uint8=parity,
    )
    return provider, cache


def _propagation_params(cfg: PropagationConfig, precision: str) -> PropagationParams:
    parity = cfg.protocol == "davis_parity"
    return PropagationParams(
        topk=cfg.topk,
        temperature=cfg.temperature,
        radius=cfg.size_mask_neighborhood or None,
        shape=cfg.window_shape,
        n_last_frames=cfg.n_last_frames,
        renormalise=not parity,  # type: ignore[arg-type]
        hard_queue=cfg.queue_labels == "hard",
        tile=cfg.tile_size,
        memory_budget_mb=cfg.memory_budget_mb,
        score_dtype="bfloat16" if precision == "bf16" else "float32",
    )


def _start_manifest(
    cfg: PropagationConfig,
    run: VideoRun,
    extractor: FeatureExtractor,
    geometry: Any,
    video: VideoLabels,
    key: str,
    label_frames: list[str],
) -> dict[str, Any]:
    """The manifest written before the first frame (status ``running``)."""
    n = len(run.frames)
    source = {p.stem: run.frames[k].stem for p, k in zip(run.frames, policies.source_keyframes(cfg, n))}
    return {
        "status": "running",
        "protocol": cfg.protocol,
        "mode": cfg.mode,
        "keyframe_policy": cfg.resolved_policy,
        "params_key": key,
        "parameters": to_dict(cfg),
        "backbone": extractor.describe(),
        "geometry": geometry.to_dict(),
        "versions": run_metadata(),
        "label_frames": label_frames,
        "source_frames": source,
        "prob_classes": video.prob_classes if cfg.save_probs else None,
        "ignore_id": cfg.ignore_id,
        "palette": "driving27" if cfg.dataset == "driving" else "davis",
        "frames": run.stems,
    }


def _restore(job: _Frames) -> int:
    """The first frame to propagate: 0, or where a resumed run stopped (its context restored into the propagator)."""
    resume = job.cfg.resume and not job.cfg.overwrite
    state = job.state_store.load(job.key) if resume else None
    if state is None:
        return 0
    start, job.channel_ids = int(state["next_index"]), list(state["channel_ids"])
    for idx, lab in state["anchors"]:  # features come back from the cache or are re-extracted
        job.prop.add_anchor(job.provider[idx], lab, idx)
    for idx, soft in state["queue"]:
        job.prop.push(job.provider[idx], soft, idx)
    logger.info("%s: resuming at frame %d", job.run.name, start)
    return start


def _run_frames(job: _Frames, segments: list[range]) -> None:
    """Propagate and write every frame of ``segments`` from where a resumed run stopped; saves the resume state."""
    resume = job.cfg.resume and not job.cfg.overwrite
    start = _restore(job)
    bar = progress_bar(total=len(job.run.frames), initial=start, desc=f"{job.run.name} (frames)", unit="frame")
    for seg in segments:
        if seg.stop <= start:
            continue
        if resume and seg.start >= start and all(job.video.done(i) for i in seg):
            job.skipped += len(seg)
            bar.update(len(seg))
            continue
        for i in range(max(seg.start, start), seg.stop):
            _frame(job, i)
            bar.update(1)
            if (i + 1) % 10 == 0 and i + 1 < seg.stop:
                job.state_store.save(
                    job.key,
                    i + 1,
                    job.channel_ids,
                    [(a, lab.cpu()) for a, _, lab in job.prop.anchors],
                    [(q, soft_q.cpu()) for q, _, soft_q in job.prop.queue],
                )
    bar.close()
    job.state_store.clear()


def _frame(job: _Frames, i: int) -> None:
    """Predict frame ``i`` (a keyframe's prediction is its label, as in both references) and write it."""
    cfg, video, prop = job.cfg, job.video, job.prop
    feats = job.provider[i]
    t0 = time.perf_counter()
    probs = None
    if i in job.keyframes:  # keyframe set-up and writing count as output time
        label = video.label(i)
        if cfg.resolved_policy != "continuous":
            prop.reset()
        job.channel_ids = video.channels(label, job.channel_ids)
        prop.add_anchor(feats, video.encode(label, job.channel_ids), i)
        ids = label.astype(np.uint8)
        if cfg.save_probs:
            probs = encode_labels(label, job.channel_ids, ignore_id=cfg.ignore_id, ignore=video.ignore)
    else:
        soft = prop.step(feats, i).cpu()
        job.t_prop += time.perf_counter() - t0
        t0 = time.perf_counter()
        if job.parity:
            ids, probs = parity_decode(soft, job.channel_ids, job.geometry, with_probs=cfg.save_probs)
        else:
            void = cfg.ignore_id if cfg.mode == "semantic" else 0
            ids, probs = decode_prediction(soft, job.channel_ids, job.native, void_id=void)
    video.write(i, ids, probs, job.channel_ids)
    job.t_write += time.perf_counter() - t0
    job.written += 1


def propagate(
    cfg: PropagationConfig, extractor: FeatureExtractor | None = None, on_start: Callable[[], Any] | None = None
) -> list[RunResult]:
    """Propagate every selected video of ``cfg.data_path`` into ``cfg.output_dir``; returns one result per video.

    Every video's frames and keyframe labels are checked before the first one is propagated; ``on_start`` is then
    called (the command line records ``config.yaml`` there).
    """
    videos = list_videos(cfg)
    extractor = extractor or extractor_from_config(cfg)
    if (
        cfg.patch_size is not None
        and extractor.spec.kind in ("dino", "mae", "timm")
        and extractor.stride != cfg.patch_size
    ):
        raise PropagationInputError(
            f"backbone {cfg.arch} has stride {extractor.stride} but patch_size={cfg.patch_size}; set patch_size: "
            f"{extractor.stride}"
        )
    device = resolve_device(cfg.device)
    out_root = Path(cfg.output_dir)
    frames = []
    for video in videos:  # fail before any work on a bad frame size or a missing keyframe label
        check_frame_sizes(video, cfg.frame_size_mismatch)  # type: ignore[arg-type]
        n = len(video.frames) if cfg.max_frames is None else min(len(video.frames), cfg.max_frames)
        keyframes = policies.keyframes(cfg, n)
        for k in keyframes:
            video.label_path(k)
        if keyframes:
            check_first_label(cfg, video, keyframes[0])
        frames += video.frames[:n]
    bad, reasons = check_images(
        frames, total_budget_s=300.0
    )  # decode the frames (up to a budget; the rest are decoded when used)
    if bad:
        raise PropagationInputError(
            f"{len(bad)} of {len(frames)} frames cannot be read:\n  " + "\n  ".join(reasons[:20]) + "\nreplace them"
        )
    if on_start is not None:
        on_start()
    return [propagate_video(cfg, v, extractor, out_root, device) for v in videos]
