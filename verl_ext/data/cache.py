"""The tokenized-data cache: encode a dataset once, map it everywhere.

Every rank of every run used to read and re-tokenize the whole dataset at start (and resume) and
hold it in Python memory. Now the encoded samples live in ``<data.cache_dir>/<fingerprint>/`` as one
Arrow IPC file plus ``meta.json`` (stats, inputs), read memory-mapped (``verl_ext.data.token_store``).

- **Fingerprint**: everything that changes the tokens (each input file's path, size and mtime, or
  its content hash with ``data.cache_hash=content``; the tokenizer's vocabulary, special tokens and
  chat template, which is ``model.custom_chat_template`` when set (every loader applies it:
  ``verl_ext.chat_template``); every encoding option of ``DataOptions``; ``max_samples``; the dataset class; the
  encoder version). Batch sizes, lr, epochs, ``pad_mode`` reuse it.
- **Once per run, safely**: the builder holds ``<fingerprint>.lock`` (``flock``; also across nodes
  on a shared filesystem), writes into ``<fingerprint>.tmp-<pid>`` and renames it when complete.
  Under torchrun only local rank 0 builds; the other local ranks wait for the folder (or the
  builder's error marker, so a bad row stops every rank with the same message). A killed build
  leaves only a ``.tmp-`` folder, removed by the next builder.
- **Fast**: rows are streamed in record batches and encoded on all cores (a fork pool; the Jinja
  render is the cost); ``verl-ext prepare --ray`` encodes on a Ray cluster (``verl_ext.data.cache_ray``).

``data.cache=off|auto|rebuild`` (default auto): off encodes in memory (same code, same items).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import multiprocessing as mp
import os
import shutil
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa

from verl_ext import io
from verl_ext.data import token_store
from verl_ext.rows import DataError, RowRef, iter_row_batches
from verl_ext.data.token_store import TokenStore

logger = logging.getLogger(__name__)

# Bump when verl_ext.data.masks / datasets change the tokens they produce for the same input.
ENCODER_VERSION = "2026.12.2"  # issue 19: masks from the render itself (no header, injected text, trailing EOS)
META_FILE = "meta.json"
MODES = ("off", "auto", "rebuild")
CHUNK_ROWS = 64  # rows per task sent to a worker
POOL_MIN_ROWS = 1000  # below this a pool's start-up costs more than it saves


@dataclass(frozen=True)
class CacheOptions:
    """``data.cache*`` keys; the one home of their defaults (``null`` in YAML = this)."""

    cache: str = "auto"
    cache_dir: str | None = None  # default: <VERL_EXT_CACHE or ~/.cache/verl-ext>/data
    cache_workers: int | None = None  # default: every core this process may use
    cache_hash: str = "stat"  # stat (path, size, mtime) | content (sha256 of each file)

    @classmethod
    def from_config(cls, config: Any) -> "CacheOptions":
        get = config.get if hasattr(config, "get") else (lambda k, d=None: d)
        values = {f.name: get(f.name, None) for f in fields(cls)}
        opts = cls(**{k: v for k, v in values.items() if v is not None})
        if str(opts.cache) not in MODES:
            raise DataError(f"data.cache={opts.cache!r}; choose one of {', '.join(MODES)}")
        if opts.cache_hash not in ("stat", "content"):
            raise DataError(f"data.cache_hash={opts.cache_hash!r}; choose stat or content")
        return opts

    def root(self) -> Path:
        return Path(os.path.expanduser(str(self.cache_dir))) if self.cache_dir else default_root()

    def workers(self) -> int:
        if self.cache_workers:
            return max(1, int(self.cache_workers))
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_root() -> Path:
    """``<VERL_EXT_CACHE or ~/.cache/verl-ext>/data``; on several nodes set ``data.cache_dir`` to a
    shared filesystem to build once, or leave it local to build once per node."""
    from verl_ext.assets import cache_dir

    return cache_dir() / "data"


# ---------------------------------------------------------------------------- fingerprint
def tokenizer_fingerprint(tokenizer) -> str:
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # fast tokenizers: vocab, merges, normalizer, added tokens in one JSON
        h.update(backend.to_str().encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(json.dumps(tokenizer.chat_template, sort_keys=True, default=str).encode())
    h.update(json.dumps(getattr(tokenizer, "special_tokens_map", {}), sort_keys=True, default=str).encode())
    return h.hexdigest()


def file_fingerprint(path: str, how: str) -> dict:
    if not os.path.exists(path):
        raise DataError(f"{path}: file not found (check data.train_files / data.val_files)")
    st = os.stat(path)
    out = {"path": os.path.abspath(path), "size": st.st_size}
    if how == "content":
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        out["sha256"] = h.hexdigest()
    else:
        out["mtime_ns"] = st.st_mtime_ns
    return out


def fingerprint_inputs(dataset_cls, files: list[str], tokenizer, opts, max_samples: int | None, how: str) -> dict:
    from verl_ext.data.datasets import NOT_ENCODING

    encoding = {k: v for k, v in asdict(opts).items() if k not in NOT_ENCODING}
    return {
        "encoder_version": ENCODER_VERSION,
        "dataset": f"{dataset_cls.__module__}.{dataset_cls.__qualname__}",
        "files": [file_fingerprint(p, how) for p in files],
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "options": encoding,
        "max_samples": int(max_samples) if max_samples and max_samples > 0 else None,
    }


def fingerprint(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:24]


# ---------------------------------------------------------------------------- entry point
def load_or_build(dataset_cls, files: list[str], tokenizer, config, max_samples: int | None = None, *,
                  progress: bool | None = None, producer=None) -> tuple[TokenStore, dict, str | None]:
    """(store, stats, cache folder or None) for these files under this config (see module doc).
    ``producer(encoder, stats)`` yields the record batches of a build (default: this machine's
    cores; ``verl_ext.data.cache_ray`` passes a Ray one)."""
    copts = CacheOptions.from_config(config)
    encoder = dataset_cls.row_encoder(tokenizer, config)
    if producer is None:
        workers = copts.workers()
        pool_min = 0 if copts.cache_workers else POOL_MIN_ROWS  # an explicit count is always used

        def producer(enc, stats):
            return _encoded_batches(enc, files, max_samples, workers, progress, stats, pool_min)

    if copts.cache == "off":
        stats: dict = {}
        table = pa.Table.from_batches(list(producer(encoder, stats)), schema=token_store.SCHEMA)
        return TokenStore(table, files), stats, None
    inputs = fingerprint_inputs(dataset_cls, files, tokenizer, encoder.opts, max_samples, copts.cache_hash)
    root = copts.root()
    final = root / fingerprint(inputs)
    fresh_after = _process_start() if copts.cache == "rebuild" else 0.0
    if _complete(final, fresh_after):
        return _open(final, files)
    if _distributed() and int(os.environ.get("LOCAL_RANK", "0")) != 0:
        _wait_for_builder(final, fresh_after)
        return _open(final, files)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(final.with_name(final.name + ".lock")):
        if not _complete(final, fresh_after):  # another node or job may have built it meanwhile
            _build(final, inputs, files, lambda stats: producer(encoder, stats))
    return _open(final, files)


def find(dataset_cls, files: list[str], tokenizer, config, max_samples: int | None = None) -> Path | None:
    """The complete cache folder for this config, if one exists (preflight and the plan read it)."""
    copts = CacheOptions.from_config(config)
    if copts.cache == "off":
        return None
    encoder = dataset_cls.row_encoder(tokenizer, config)
    final = copts.root() / fingerprint(fingerprint_inputs(dataset_cls, files, tokenizer, encoder.opts, max_samples, copts.cache_hash))
    return final if _complete(final, 0.0) else None


def read_meta(folder: Path) -> dict:
    return json.loads((Path(folder) / META_FILE).read_text())


# ---------------------------------------------------------------------------- build
def _build(final: Path, inputs: dict, files: list[str], produce) -> None:
    """Write ``produce(stats)``'s batches into a temp folder, then rename it to ``final``."""
    for stale in final.parent.glob(final.name + ".tmp-*"):  # left by a killed build (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    error_marker = _error_marker(final)
    error_marker.unlink(missing_ok=True)
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True)
    t0 = time.monotonic()
    stats: dict = {}
    try:
        n = token_store.write(str(tmp), produce(stats))
        io.fsync(tmp / token_store.DATA_FILE)
        meta = {"fingerprint": final.name, "inputs": inputs, "stats": stats, "samples": n, "files": list(files),
                "build_s": round(time.monotonic() - t0, 3), "created": time.time()}
        _write_json(tmp / META_FILE, meta)
        if final.exists():  # data.cache=rebuild
            shutil.rmtree(final)
        os.replace(tmp, final)  # a folder: io.publish's rename, without its file fsync (done above)
        io.fsync(final.parent)
    except DataError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        _write_json(error_marker, {"error": str(e), "created": time.time()})
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.warning("[verl-ext] tokenized cache built in %.1fs: %s -> %s", time.monotonic() - t0, stats, final)


def _row_chunks(files: list[str], max_samples: int | None) -> Iterator[list[tuple[str, int, dict]]]:
    """Rows in file order, ``CHUNK_ROWS`` at a time, stopping after ``max_samples`` rows."""
    left = max_samples if max_samples and max_samples > 0 else None
    for path in files:
        for batch in iter_row_batches(path, batch_size=CHUNK_ROWS):
            if left is not None:
                batch = batch[:left]
                left -= len(batch)
            if batch:
                yield [(path, i, row) for i, row in batch]
            if left == 0:
                return


def _encoded_batches(encoder, files, max_samples, workers, progress, stats: dict,
                     pool_min: int = POOL_MIN_ROWS) -> Iterator[pa.RecordBatch]:
    """Record batches of the encoded samples, in row order; sums the counters into ``stats``."""
    from verl_ext.data.datasets import new_stats

    stats.update(new_stats())
    file_index = {p: i for i, p in enumerate(files)}
    total = _count_rows(files, max_samples)
    if total is not None and total < pool_min:
        workers = 1
    stats["workers"] = workers
    bar = _bar(total, progress)
    chunks = _row_chunks(files, max_samples)
    try:
        if workers <= 1:
            results = (encode_chunk(encoder, chunk) for chunk in chunks)
            yield from collect(results, stats, file_index, bar)
        else:
            yield from collect(_pooled(encoder, chunks, workers), stats, file_index, bar)
    finally:
        if bar is not None:
            bar.close()


def collect(results, stats, file_index, bar=None) -> Iterator[pa.RecordBatch]:
    """(samples, counters, rows) results -> record batches of ~4M tokens; counters summed into stats."""
    pending: list = []
    size = 0
    for samples, chunk_stats, n_rows in results:
        for k, v in chunk_stats.items():
            stats[k] = stats.get(k, 0) + v
        pending.extend(samples)
        size += sum(len(s.input_ids) for s in samples)
        if bar is not None:
            bar.update(n_rows)
        if size >= 1 << 22:  # ~4M tokens per record batch
            yield token_store.to_batch(pending, file_index)
            pending, size = [], 0
    if pending:
        yield token_store.to_batch(pending, file_index)


# The pool's workers inherit the row encoder at fork time (no pickling of the tokenizer).
_WORKER_ENCODER = None


def _init_worker(encoder) -> None:
    global _WORKER_ENCODER
    _WORKER_ENCODER = encoder


def _encode_chunk(chunk):
    return encode_chunk(_WORKER_ENCODER, chunk)


def encode_chunk(encoder, chunk: list[tuple[str, int, dict]]):
    """(samples, counters, rows) of one chunk; a DataError names file and row."""
    from verl_ext.data.datasets import new_stats

    encoder.stats = new_stats()
    samples = []
    for path, i, row in chunk:
        samples.extend(encoder.encode_row(row, RowRef(path, i)))
    return samples, encoder.stats, len(chunk)


def _pooled(encoder, chunks, workers: int):
    """Encode chunks on ``workers`` processes, yielding results in order, a bounded number in flight."""
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(encoder,)) as pool:
        inflight: deque = deque()
        try:
            for chunk in chunks:
                inflight.append(pool.submit(_encode_chunk, chunk))
                if len(inflight) >= 4 * workers:
                    yield inflight.popleft().result()
            while inflight:
                yield inflight.popleft().result()
        finally:
            for f in inflight:
                f.cancel()


def _count_rows(files: list[str], max_samples: int | None) -> int | None:
    """Rows to encode (Parquet metadata, JSONL lines); None when unknown without parsing."""
    total = 0
    for path in files:
        try:
            kind = io.input_kind(path)
            n = io.count_rows(path) if kind == "parquet" else sum(1 for _ in io.iter_lines(path)) if kind == "jsonl" else None
        except Exception:  # the reader reports unreadable files with file and reason
            return None
        if n is None:
            return None
        total += n
    return min(total, max_samples) if max_samples and max_samples > 0 else total


def _bar(total: int | None, progress: bool | None):
    if progress is False or (progress is None and (total or 0) < 500):
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="verl-ext: tokenizing", unit="row", mininterval=1.0)


# ---------------------------------------------------------------------------- waiting, locking
def _open(final: Path, files: list[str]) -> tuple[TokenStore, dict, str]:
    meta = read_meta(final)
    return TokenStore.open(str(final), files), meta["stats"], str(final)


def _complete(final: Path, fresh_after: float) -> bool:
    meta = final / META_FILE
    if not meta.exists() or not (final / token_store.DATA_FILE).exists():
        return False
    return not fresh_after or read_meta(final).get("created", 0) >= fresh_after


def _error_marker(final: Path) -> Path:
    return final.with_name(final.name + ".error")


def _wait_for_builder(final: Path, fresh_after: float, poll_s: float = 0.25) -> None:
    """Local ranks > 0: wait until local rank 0 finished the build (or failed it)."""
    started = time.monotonic()
    since = fresh_after or _process_start()
    marker = _error_marker(final)
    next_note = 60.0
    while not _complete(final, fresh_after):
        if marker.exists() and marker.stat().st_mtime >= since - 1:
            raise DataError(json.loads(marker.read_text())["error"])
        waited = time.monotonic() - started
        if waited > next_note:
            logger.warning("[verl-ext] waiting %.0fs for local rank 0 to build the tokenized cache %s", waited, final)
            next_note += 60.0
        time.sleep(poll_s)


@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _process_start() -> float:
    import psutil

    return psutil.Process().create_time()


def _write_json(path: Path, obj: dict) -> None:
    io.atomic_write(path, json.dumps(obj, indent=1, default=str))
