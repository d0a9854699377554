"""Region extraction: region images -> frozen stage-1 tile embeddings ``[g*g, D]`` per region.

Each region is tiled row-major, its tiles are embedded in batches by the frozen stage-1 ViT (tiles of
several regions share a batch), and one fp16 tensor ``[g*g, D]`` is written per region under
``output_dir/regions/<region_id>.pt`` together with ``output_dir/manifest.csv`` (region id, slide id, x, y, sizes,
g, D, encoder hash, normalisation; :mod:`dino_lib.hierarchical.manifest`). Reading images and writing files run in
background threads so the encoder never waits for I/O. Resumable: regions listed in the manifest whose file is
valid and was made by the same encoder and normalisation are skipped; a different encoder is an error.

Command-line twin::

    python -m dino_lib.features --config params/extract_region_features/ci.yaml [key=value ...]
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from dino_lib.config import ConfigError, param, save_run_config
from dino_lib.data.decode import check_images
from dino_lib.hierarchical.dataset import RegionDataError, check_region_tensor, load_feature_file
from dino_lib.hierarchical.encoder import TileEncoder, load_tile_encoder
from dino_lib.hierarchical.manifest import SCHEMA_VERSION, format_stats, read_manifest, write_manifest
from dino_lib.hierarchical.sources import RegionSource, list_regions, load_region_tiles, resolve_path
from dino_lib.hierarchical.stacks import write_slide_stacks
from dino_lib.runtime import autocast, get_rank, get_world_size, resolve_device, resolve_precision
from dino_lib.runtime.precision import PRECISION_CHOICES
from dino_lib.utils.io import atomic_torch_save
from dino_lib.utils.progress import progress_bar

__all__ = ["RegionExtractionConfig", "ExtractionResult", "ensure_region_features", "extract_regions", "main"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class RegionExtractionConfig:
    """Parameters of region extraction (the keys of ``params/extract_region_features/*.yaml``)."""

    task: str = param("regions", choices=["regions"], help="selects region extraction in python -m dino_lib.features")
    data_path: str = param("sample:histology_regions", help="folder of region images or of coordinate-named tiles")
    input_layout: str = param("regions", choices=["regions", "tiles"], help="region images or tiles")
    output_dir: str = param("runs/ci/extract_region_features", help="regions/, manifest.csv, slides/")
    pretrained_weights: str | None = param(None, help="stage-1 backbone or DINO checkpoint; None = random ViT")
    checkpoint_key: str = param("teacher", help="key of a full DINO checkpoint")
    arch: str = param("auto", help="stage-1 ViT name, or 'auto' = read the size from the weights")
    patch_size: int = param(16, gt=0)
    tile_size: int = param(256, gt=0, help="tile side in pixels (the stage-1 input)")
    region_size: int | None = param(None, help="region side in pixels (tiles layout; regions layout: any multiple)")
    input_size: int | None = param(None, help="resize tiles to this side before the encoder (None = tile_size)")
    normalization: str = param("auto", choices=["auto", "imagenet", "hipt"], help="must match stage-1 training")
    pad_mode: str = param("error", choices=["error", "crop", "pad"], help="regions not a multiple of tile_size")
    batch_size: int = param(64, gt=0, help="tiles per encoder forward")
    device: str = param("auto", help="auto | cpu | cuda | cuda:N")
    precision: str = param("auto", choices=PRECISION_CHOICES, help="encoder precision (auto: bf16 where native)")
    stacked: bool = param(False, help="also write per-slide stacks [M, g*g, D] (slides/)")
    overwrite: bool = param(False, help="re-extract everything even if the manifest matches")
    flush_every: int = param(32, gt=0, help="rewrite the manifest every N encoder batches (resume granularity)")
    prefetch: int = param(4, ge=1, help="regions read ahead by the loader thread")
    fallback_encoder: dict = param(default_factory=dict, help="kwargs of the random ViT when weights are None")

    def validate(self) -> None:
        if self.region_size is not None and self.region_size % self.tile_size:
            raise ConfigError(f"region_size {self.region_size} must be a multiple of tile_size {self.tile_size}")
        if self.input_layout == "tiles" and self.region_size is None:
            raise ConfigError("input_layout 'tiles' needs region_size (pixels per region side)")


@dataclasses.dataclass
class ExtractionResult:
    manifest: Path
    written: int
    skipped: int
    tiles: int
    seconds: float
    encoder_seconds: float
    loop_seconds: float = 0.0  # reading, encoding and writing only (no model building, listing or stacking)
    stacked_manifest: Path | None = None

    @property
    def tiles_per_second(self) -> float:
        """Streaming throughput (reading, encoding, writing), excluding model building and listing."""
        return self.tiles / self.loop_seconds if self.loop_seconds > 0 else 0.0


def _prefetch(sources: Sequence[RegionSource], cfg: RegionExtractionConfig) -> Iterator[tuple[RegionSource, Any]]:
    """Read regions in a background thread (PIL decoding releases the GIL), ``prefetch`` regions ahead."""
    q: queue.Queue = queue.Queue(maxsize=cfg.prefetch)
    stop = threading.Event()

    def work() -> None:
        for src in sources:
            if stop.is_set():
                return
            try:
                item: Any = load_region_tiles(src, cfg.tile_size, cfg.pad_mode)  # type: ignore[arg-type]
            except Exception as err:  # noqa: BLE001 - re-raised in the consumer with the file name
                item = err
            q.put((src, item))
        q.put(None)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while (entry := q.get()) is not None:
            src, item = entry
            if isinstance(item, Exception):
                raise ValueError(f"{src.files[0]}: cannot read region: {item}") from item
            yield src, item
    finally:
        stop.set()


def _resume_rows(cfg: RegionExtractionConfig, out: Path, encoder: TileEncoder, norm: tuple) -> dict[str, dict]:
    """Manifest rows that can be kept: same encoder, normalisation and tile size, and a valid file.

    Reads ``manifest.csv`` and the per-rank parts ``manifest.rank<r>.csv`` of an interrupted multi-process run.
    """
    manifests = [p for p in [out / "manifest.csv", *sorted(out.glob("manifest.rank*.csv"))] if p.is_file()]
    if cfg.overwrite or not manifests:
        return {}
    kept = {}
    for manifest, row in ((m, r) for m in manifests for r in read_manifest(m)):
        if row["encoder_hash"] != encoder.weights_hash or (row["norm_mean"], row["norm_std"]) != norm:
            raise ConfigError(
                f"{manifest}: holds features of another stage-1 encoder or normalisation ({row['encoder_hash']}, "
                f"{row['norm_mean']}/{row['norm_std']} vs {encoder.weights_hash}, {norm[0]}/{norm[1]}); "
                "use a new output_dir or overwrite=true (feature sets must not be mixed; docs/hierarchical.md, "
                "Region extraction)"
            )
        if int(row["tile_size"]) != cfg.tile_size:
            continue
        try:
            obj = load_feature_file(out / row["feature_path"])
            if int(row["g"]) > 0:
                check_region_tensor(obj, g=int(row["g"]), dim=int(row["D"]), name=str(out / row["feature_path"]))
        except RegionDataError as err:
            log.warning("re-extracting %s: %s", row["region_id"], err)
            continue
        kept[str(row["region_id"])] = row
    return kept


def extract_regions(cfg: RegionExtractionConfig, encoder: TileEncoder | None = None) -> ExtractionResult:
    """Run extraction as configured; returns counts, timings and the manifest path.

    Args:
        cfg: the configuration.
        encoder: an already built stage-1 encoder (else built from ``cfg``: weights, arch, normalisation).
    """
    start = time.perf_counter()
    out = Path(cfg.output_dir)
    rank, world = get_rank(), get_world_size()
    device = resolve_device(cfg.device)
    if encoder is None:
        encoder = load_tile_encoder(
            cfg.pretrained_weights, arch=cfg.arch, patch_size=cfg.patch_size, checkpoint_key=cfg.checkpoint_key,
            normalization=cfg.normalization, input_size=cfg.input_size, fallback=cfg.fallback_encoder,
        )  # fmt: skip
    encoder = encoder.to(device)
    norm = (format_stats(encoder.mean.flatten().tolist()), format_stats(encoder.std.flatten().tolist()))
    sources = list_regions(resolve_path(cfg.data_path), layout=cfg.input_layout,
                           region_size=cfg.region_size, tile_size=cfg.tile_size)  # fmt: skip
    rows = _resume_rows(cfg, out, encoder, norm)
    todo = [s for s in sources if s.region_id not in rows][rank::world]  # shard by rank; one process: all
    log.info("%d regions: %d to extract here (rank %d/%d), %d already done (%s)", len(sources), len(todo), rank,
             world, len(rows), out)  # fmt: skip
    part = out / ("manifest.csv" if world == 1 else f"manifest.rank{rank}.csv")
    files = [f for src in todo for f in src.files]
    bad, reasons = check_images(
        files, total_budget_s=300.0
    )  # decode before any work (up to a budget; the rest when read)
    if bad:
        raise RegionDataError(
            f"{len(bad)} of {len(files)} region images cannot be read:\n  " + "\n  ".join(reasons[:20])
            + "\nreplace them, or remove them from the input folder"
        )  # fmt: skip
    if rank == 0:
        save_run_config(cfg, out)
    precision = resolve_precision(cfg.precision, device)
    writer = ThreadPoolExecutor(max_workers=1)  # writes overlap the next forward
    pending: list[tuple[RegionSource, torch.Tensor, tuple[int, int], tuple[int, int]]] = []
    futures, n_tiles, enc_time, since_flush = [], 0, 0.0, 0

    def row_for(src: RegionSource, grid: tuple[int, int], hw: tuple[int, int]) -> dict[str, Any]:
        return {"region_id": src.region_id, "slide_id": src.slide_id, "x": src.x, "y": src.y,
                "region_size": hw[0], "tile_size": cfg.tile_size,
                "g": grid[0] if grid[0] == grid[1] else 0, "D": encoder.embed_dim,
                "feature_path": f"regions/{src.region_id}.pt", "stack_index": -1, "encoder": encoder.arch,
                "encoder_hash": encoder.weights_hash, "norm_mean": norm[0], "norm_std": norm[1],
                "dtype": "float16", "schema_version": SCHEMA_VERSION}  # fmt: skip

    def run_batch() -> None:
        nonlocal n_tiles, enc_time
        tiles = torch.cat([p[1] for p in pending]).to(device, non_blocking=True)  # (sum g*g, 3, t, t)
        t0 = time.perf_counter()
        with autocast(device, precision):
            feats = torch.cat([encoder(chunk) for chunk in tiles.split(cfg.batch_size)])  # (sum g*g, D)
        feats = feats.float().cpu()
        enc_time += time.perf_counter() - t0
        n_tiles += tiles.shape[0]
        for (src, _tiles, grid, hw), f in zip(pending, feats.split([p[1].shape[0] for p in pending])):
            row = row_for(src, grid, hw)
            # clone(): saving a view would write the whole batch storage
            payload = {"features": f.to(torch.float16).clone(), **{k: row[k] for k in ("slide_id", "x", "y", "g", "D")},
                       "tile_size": cfg.tile_size, "encoder_hash": encoder.weights_hash,
                       "norm_mean": norm[0], "norm_std": norm[1], "schema_version": SCHEMA_VERSION}  # fmt: skip
            futures.append(writer.submit(atomic_torch_save, payload, out / row["feature_path"]))
            rows[src.region_id] = row
        pending.clear()

    loop_start = time.perf_counter()
    try:
        bar = progress_bar(_prefetch(todo, cfg), enabled=rank == 0, total=len(todo), desc="regions", unit="region")
        for src, (tiles, grid, hw) in bar:
            pending.append((src, tiles, grid, hw))
            if sum(p[1].shape[0] for p in pending) >= cfg.batch_size:
                run_batch()
                since_flush += 1
            if since_flush >= cfg.flush_every:
                for fut in futures:
                    fut.result()
                futures.clear()
                write_manifest(rows.values(), part)
                since_flush = 0
        if pending:
            run_batch()
    finally:
        for fut in futures:
            fut.result()
        writer.shutdown()
        loop_seconds = time.perf_counter() - loop_start
        if rows:
            write_manifest(rows.values(), part)
    if world > 1:
        _merge_rank_manifests(out, rank)
    stacked = None
    if cfg.stacked:
        stacked = write_slide_stacks(out / "manifest.csv") if rank == 0 else out / "slides" / "manifest.csv"
        if world > 1:
            torch.distributed.barrier()
    seconds = time.perf_counter() - start
    return ExtractionResult(out / "manifest.csv", len(todo), len(sources) - len(todo), n_tiles, seconds, enc_time,
                            loop_seconds, stacked)  # fmt: skip


def _merge_rank_manifests(out: Path, rank: int) -> None:
    """After every rank wrote ``manifest.rank<r>.csv``: rank 0 merges them into ``manifest.csv`` (de-duplicated)."""
    import torch.distributed as dist

    dist.barrier()
    if rank == 0:
        parts = sorted(out.glob("manifest.rank*.csv"))
        merged = {str(r["region_id"]): r for p in parts for r in read_manifest(p)}
        write_manifest(merged.values(), out / "manifest.csv")
        for p in parts:
            p.unlink()
    dist.barrier()


def main(argv: Sequence[str] | None = None) -> ExtractionResult:
    """``python -m dino_lib.features --config FILE`` with ``task: regions`` (also under ``torchrun``: regions are
    sharded over the processes and rank 0 merges the manifest)."""
    from dino_lib.runtime import destroy_distributed, init_distributed

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from dino_lib.cli import parse_config, run_folder

    cfg = parse_config(RegionExtractionConfig, argv, prog="python -m dino_lib.features",
                       description="Extract region tensors [g*g, D] (HIPT stage 2 input)")  # fmt: skip
    init_distributed(resolve_device(cfg.device))
    try:
        with run_folder(cfg):
            result = extract_regions(cfg)
    finally:
        destroy_distributed()
    log.info("wrote %d regions (%d skipped) in %.1fs -> %s", result.written, result.skipped, result.seconds,
             result.manifest)  # fmt: skip
    return result


if __name__ == "__main__":
    main()


def ensure_region_features(data_path: str | Path, **overrides: Any) -> Path:
    """The manifest under ``data_path``; for the CI default folder only, extract the sample regions first.

    Lets the region-pretraining notebook run on its own in CI when the extraction step has not run: when
    ``data_path`` is a missing ``.../ci/extract_region_features`` folder, the sample histology regions are extracted
    into it with a random tiny stage-1 encoder (a warning says so). Any other missing path is an error, so a typo
    never trains on random features.
    """
    if str(data_path).startswith("sample:"):
        return Path(str(data_path))
    path = Path(data_path)
    manifest = path if path.is_file() else path / "manifest.csv"
    if manifest.is_file():
        return manifest
    if path.exists() or path.parts[-2:] != ("ci", "extract_region_features"):
        raise FileNotFoundError(
            f"no region manifest at {manifest}; run extraction first (notebooks/extract_region_features.ipynb or "
            "python -m dino_lib.features --config params/extract_region_features/<set>.yaml) and pass its output_dir"
        )
    log.warning("no region manifest under %s: extracting the sample histology regions with a RANDOM encoder", path)
    cfg = RegionExtractionConfig(output_dir=str(path), input_size=64, batch_size=16, **overrides)
    return extract_regions(cfg).manifest
