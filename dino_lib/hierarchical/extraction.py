"""Region extraction: region images -> frozen stage-1 tile embeddings ``[g*g, D]`` per region.

Each region is tiled row-major, its tiles are embedded in batches by the frozen stage-1 ViT (tiles of
several regions share a batch), and one fp16 tensor ``[g*g, D]`` is written per region under
``output_dir/regions/<region_id>.pt`` together with ``output_dir/manifest.csv`` (region id, slide id, x, y, sizes,
g, D, encoder hash, normalisation; :mod:`dino_lib.hierarchical.manifest`). Reading images and writing files run in
background threads so the encoder never waits for I/O. Resumable: regions listed in the manifest whose file is
valid and was made by the same encoder and normalisation are skipped; a different encoder is an error.

Command-line twin (:func:`dino_lib.hierarchical.__main__.extract_main`)::

    python -m dino_lib.features --config params/extract_region_features/ci.yaml [key=value ...]
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from dino_lib.config import ConfigError, from_dict, param, save_run_config
from dino_lib.data.decode import check_images
from dino_lib.data.samples import resolve_data_path
from dino_lib.hierarchical.dataset import RegionDataError, check_region_tensor, load_feature_file
from dino_lib.hierarchical.encoder import TileEncoder, load_tile_encoder
from dino_lib.hierarchical.manifest import SCHEMA_VERSION, format_stats, read_manifest, write_manifest
from dino_lib.hierarchical.sources import RegionSource, list_regions, load_region_tiles
from dino_lib.hierarchical.stacks import write_slide_stacks
from dino_lib.runtime import autocast, get_rank, get_world_size, resolve_device, resolve_precision
from dino_lib.runtime.precision import PRECISION_CHOICES
from dino_lib.utils.io import atomic_torch_save
from dino_lib.utils.progress import progress_bar

__all__ = ["RegionExtractionConfig", "ExtractionResult", "ensure_region_features", "extract_regions"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class RegionExtractionConfig:
    """Parameters of region extraction (the keys of ``params/extract_region_features/*.yaml``)."""

    task: str = param("regions", choices=["regions"], help="selects region extraction in python -m dino_lib.features")
    data_path: str = param("sample:histology_regions", help="folder of region images or of coordinate-named tiles")
    input_layout: str = param("regions", choices=["regions", "tiles"], help="region images or tiles")
    output_dir: str = param("runs/extract_region_features", help="regions/, manifest.csv, slides/")
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


def _norm_stats(encoder: TileEncoder) -> tuple[str, str]:
    """The encoder's normalisation as recorded in the manifest (mean, std)."""
    return format_stats(encoder.mean.flatten().tolist()), format_stats(encoder.std.flatten().tolist())


def _build_encoder(cfg: RegionExtractionConfig) -> TileEncoder:
    """The stage-1 encoder of ``cfg``: weights, arch, normalisation (a random ViT when the weights are None)."""
    return load_tile_encoder(
        cfg.pretrained_weights, arch=cfg.arch, patch_size=cfg.patch_size, checkpoint_key=cfg.checkpoint_key,
        normalization=cfg.normalization, input_size=cfg.input_size, fallback=cfg.fallback_encoder,
    )  # fmt: skip


def _check_readable(todo: Sequence[RegionSource]) -> None:
    """Decode the region images before any work (up to a time budget; the rest are checked when read)."""
    files = [f for src in todo for f in src.files]
    bad, reasons = check_images(files, total_budget_s=300.0)
    if bad:
        raise RegionDataError(
            f"{len(bad)} of {len(files)} region images cannot be read:\n  " + "\n  ".join(reasons[:20])
            + "\nreplace them, or remove them from the input folder"
        )  # fmt: skip


# Manifest columns repeated inside every region file (after ``features``), so that a file describes itself.
_FILE_KEYS = ("slide_id", "x", "y", "g", "D", "tile_size", "encoder_hash", "norm_mean", "norm_std", "schema_version")


class _RegionBatcher:
    """Groups regions into encoder batches and writes one fp16 ``[g*g, D]`` file per region.

    Tiles of several regions share a forward; files are written by a background thread so that the writes overlap
    the next forward. ``rows`` (region id -> manifest row) starts with the rows kept from an earlier run.
    """

    def __init__(self, cfg: RegionExtractionConfig, encoder: TileEncoder, device: torch.device, rows: dict) -> None:
        self.cfg, self.encoder, self.device, self.rows = cfg, encoder, device, rows
        self.out = Path(cfg.output_dir)
        self.norm = _norm_stats(encoder)
        self.precision = resolve_precision(cfg.precision, device)
        self.writer = ThreadPoolExecutor(max_workers=1)
        self.pending: list[tuple[RegionSource, torch.Tensor, tuple[int, int], tuple[int, int]]] = []
        self.futures: list[Any] = []
        self.tiles = 0
        self.encoder_seconds = 0.0

    @property
    def pending_tiles(self) -> int:
        return sum(p[1].shape[0] for p in self.pending)

    def row(self, src: RegionSource, grid: tuple[int, int], hw: tuple[int, int]) -> dict[str, Any]:
        """The manifest row of one region (``g`` = 0 for a non-square grid)."""
        enc, norm = self.encoder, self.norm
        return {"region_id": src.region_id, "slide_id": src.slide_id, "x": src.x, "y": src.y,
                "region_size": hw[0], "tile_size": self.cfg.tile_size,
                "g": grid[0] if grid[0] == grid[1] else 0, "D": enc.embed_dim,
                "feature_path": f"regions/{src.region_id}.pt", "stack_index": -1, "encoder": enc.arch,
                "encoder_hash": enc.weights_hash, "norm_mean": norm[0], "norm_std": norm[1],
                "dtype": "float16", "schema_version": SCHEMA_VERSION}  # fmt: skip

    def run_batch(self) -> None:
        """Encode the pending regions in one go and queue their files."""
        tiles = torch.cat([p[1] for p in self.pending]).to(self.device, non_blocking=True)  # (sum g*g, 3, t, t)
        t0 = time.perf_counter()
        with autocast(self.device, self.precision):
            feats = torch.cat([self.encoder(chunk) for chunk in tiles.split(self.cfg.batch_size)])  # (sum g*g, D)
        feats = feats.float().cpu()
        self.encoder_seconds += time.perf_counter() - t0
        self.tiles += tiles.shape[0]
        for (src, _tiles, grid, hw), f in zip(self.pending, feats.split([p[1].shape[0] for p in self.pending])):
            row = self.row(src, grid, hw)
            # clone(): saving a view would write the whole batch storage
            payload = {"features": f.to(torch.float16).clone(), **{k: row[k] for k in _FILE_KEYS}}
            self.futures.append(self.writer.submit(atomic_torch_save, payload, self.out / row["feature_path"]))
            self.rows[src.region_id] = row
        self.pending.clear()

    def wait(self) -> None:
        """Block until every queued file is written (re-raises a failed write)."""
        for fut in self.futures:
            fut.result()
        self.futures.clear()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.writer.shutdown()


def _stream(todo: Sequence[RegionSource], batcher: _RegionBatcher, part: Path, *, show: bool) -> float:
    """Read, encode and write every region of ``todo``; the manifest ``part`` is rewritten every ``flush_every``
    batches and at the end. Returns the seconds spent (reading, encoding, writing)."""
    cfg = batcher.cfg
    start, since_flush = time.perf_counter(), 0
    try:
        bar = progress_bar(_prefetch(todo, cfg), enabled=show, total=len(todo), desc="regions", unit="region")
        for src, (tiles, grid, hw) in bar:
            batcher.pending.append((src, tiles, grid, hw))
            if batcher.pending_tiles >= cfg.batch_size:
                batcher.run_batch()
                since_flush += 1
            if since_flush >= cfg.flush_every:
                batcher.wait()
                write_manifest(batcher.rows.values(), part)
                since_flush = 0
        if batcher.pending:
            batcher.run_batch()
    finally:
        batcher.close()
        seconds = time.perf_counter() - start
        if batcher.rows:
            write_manifest(batcher.rows.values(), part)
    return seconds


def _stack_slides(out: Path, rank: int, world: int) -> Path:
    """Per-slide stacks ``slides/`` written by rank 0 from the merged manifest; every rank gets their manifest."""
    stacked = write_slide_stacks(out / "manifest.csv") if rank == 0 else out / "slides" / "manifest.csv"
    if world > 1:
        torch.distributed.barrier()
    return stacked


def extract_regions(cfg: RegionExtractionConfig, encoder: TileEncoder | None = None) -> ExtractionResult:
    """Run extraction as configured; returns counts, timings and the manifest path.

    Regions are sharded over the processes of a distributed run (rank ``r`` takes every ``world``-th region still
    to do); rank 0 merges the per-rank manifests.

    Args:
        cfg: the configuration.
        encoder: an already built stage-1 encoder (else built from ``cfg``: weights, arch, normalisation).

    Raises:
        ConfigError: ``output_dir`` holds features of another encoder or normalisation.
        RegionDataError: region images that cannot be read (all named).
    """
    start = time.perf_counter()
    out = Path(cfg.output_dir)
    rank, world = get_rank(), get_world_size()
    device = resolve_device(cfg.device)
    encoder = (encoder or _build_encoder(cfg)).to(device)
    sources = list_regions(resolve_data_path(cfg.data_path), layout=cfg.input_layout,
                           region_size=cfg.region_size, tile_size=cfg.tile_size)  # fmt: skip
    rows = _resume_rows(cfg, out, encoder, _norm_stats(encoder))
    todo = [s for s in sources if s.region_id not in rows][rank::world]  # shard by rank; one process: all
    log.info("%d regions: %d to extract here (rank %d/%d), %d already done (%s)", len(sources), len(todo), rank,
             world, len(rows), out)  # fmt: skip
    _check_readable(todo)
    if rank == 0:
        save_run_config(cfg, out)
    batcher = _RegionBatcher(cfg, encoder, device, rows)
    part = out / ("manifest.csv" if world == 1 else f"manifest.rank{rank}.csv")
    loop_seconds = _stream(todo, batcher, part, show=rank == 0)
    if world > 1:
        _merge_rank_manifests(out, rank)
    stacked = _stack_slides(out, rank, world) if cfg.stacked else None
    return ExtractionResult(out / "manifest.csv", len(todo), len(sources) - len(todo), batcher.tiles,
                            time.perf_counter() - start, batcher.encoder_seconds, loop_seconds, stacked)  # fmt: skip


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


def ensure_region_features(data_path: str | Path, extract_if_missing: Mapping[str, Any] | None = None) -> Path:
    """The region manifest under ``data_path``; extract it first when asked to and it is missing.

    Lets a parameter set make region pretraining self-contained (``region.extract_if_missing`` in
    ``params/region_pretrain/ci.yaml``): when ``data_path`` does not exist and ``extract_if_missing`` is given,
    regions are extracted into ``data_path`` with those :class:`RegionExtractionConfig` keys (``output_dir`` is
    ``data_path``; no ``pretrained_weights`` means a random stage-1 encoder, and a warning says so). Without it a
    missing manifest is an error, so a typo never trains on random features; so is an existing folder without a
    manifest. In a distributed run every process calls this together (the extraction is sharded over them).

    Args:
        data_path: a folder with ``manifest.csv``, a manifest file, or a ``sample:`` name (returned as is).
        extract_if_missing: RegionExtractionConfig keys for the extraction of a missing ``data_path``.

    Raises:
        FileNotFoundError: no manifest, and ``data_path`` exists or no extraction was asked for.
        ConfigError: bad keys in ``extract_if_missing``.
    """
    if str(data_path).startswith("sample:"):
        return Path(str(data_path))
    path = Path(data_path)
    manifest = path if path.is_file() else path / "manifest.csv"
    if manifest.is_file():
        return manifest
    exists = path.exists()
    if get_world_size() > 1:
        torch.distributed.barrier()  # every process looks before any of them writes into the folder
    if exists or extract_if_missing is None:
        raise FileNotFoundError(
            f"no region manifest at {manifest}; run extraction first (notebooks/extract_region_features.ipynb or "
            "python -m dino_lib.features --config params/extract_region_features/<set>.yaml) and pass its output_dir"
        )
    keys = {**extract_if_missing, "output_dir": str(path)}
    cfg = from_dict(RegionExtractionConfig, keys, prefix="region.extract_if_missing.")
    encoder = "a RANDOM encoder" if cfg.pretrained_weights is None else cfg.pretrained_weights
    log.warning("no region manifest under %s: extracting the regions of %s with %s", path, cfg.data_path, encoder)
    return extract_regions(cfg).manifest
