"""Encode a dataset for the tokenized cache on a Ray cluster (``verl-ext prepare --ray``).

Ray Data maps an actor pool over the work items (a Parquet row group, or a slice of JSON rows);
each actor holds one row encoder (tokenizer + template) and returns the encoded samples of its item
as one Arrow IPC buffer plus its counters. The driver consumes the items in order and writes them
through the same temp-folder-and-rename path as a local build (``verl_ext.data.cache``), so the result
is the same cache, byte for byte the same samples, under the same fingerprint. The workers read the
input files themselves: on a multi-machine cluster they must be on a shared filesystem.
"""
from __future__ import annotations

import json
import logging
import os

import pyarrow as pa

from verl_ext.data import token_store
from verl_ext.rows import DataError, iter_row_batches

logger = logging.getLogger(__name__)
JSON_ITEM_ROWS = 2048


def work_items(files: list[str], max_samples: int | None) -> list[dict]:
    """Parquet: one item per row group (read by the worker); JSON(L): rows read here, in slices."""
    import pyarrow.parquet as pq

    items, left = [], (max_samples if max_samples and max_samples > 0 else None)
    for path in files:
        if left == 0:
            break
        if path.lower().endswith(".parquet"):
            meta = pq.ParquetFile(path).metadata
            start = 0
            for g in range(meta.num_row_groups):
                n = meta.row_group(g).num_rows
                take = n if left is None else min(n, left)
                items.append({"path": path, "group": g, "start": start, "take": take, "rows": None})
                start += n
                if left is not None:
                    left -= take
                    if left == 0:
                        break
        else:
            for batch in iter_row_batches(path, batch_size=JSON_ITEM_ROWS):
                if left is not None:
                    batch = batch[:left]
                    left -= len(batch)
                items.append({"path": path, "group": -1, "start": batch[0][0], "take": len(batch),
                              "rows": json.dumps([r for _, r in batch])})
                if left == 0:
                    break
    return items


class EncodeItems:
    """The Ray Data actor: ``item batch -> {"ipc": bytes, "stats": json}`` per item."""

    def __init__(self, encoder, files: list[str]):
        self.encoder = encoder
        self.file_index = {p: i for i, p in enumerate(files)}

    def __call__(self, batch: dict) -> dict:
        from verl_ext.data.cache import collect, encode_chunk

        out_ipc, out_stats = [], []
        for k in range(len(batch["path"])):
            item = {key: batch[key][k] for key in batch}
            rows = self._rows(item)
            stats: dict = {}
            batches = list(collect([encode_chunk(self.encoder, rows)], stats, self.file_index))
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, token_store.SCHEMA) as w:
                for b in batches:
                    w.write_batch(b)
            out_ipc.append(sink.getvalue().to_pybytes())
            out_stats.append(json.dumps(stats))
        return {"ipc": out_ipc, "stats": out_stats}

    @staticmethod
    def _rows(item: dict) -> list[tuple[str, int, dict]]:
        path, start, take = str(item["path"]), int(item["start"]), int(item["take"])
        if int(item["group"]) < 0:
            return [(path, start + i, r) for i, r in enumerate(json.loads(item["rows"]))]
        import pyarrow.parquet as pq

        from verl_ext.rows import unpad_parquet_rows

        table = pq.ParquetFile(path).read_row_group(int(item["group"])).slice(0, take)
        return [(path, start + i, r) for i, r in enumerate(unpad_parquet_rows(table.to_pylist()))]


def ray_producer(files: list[str], max_samples: int | None, address: str | None = None, concurrency: int | None = None):
    """A ``producer(encoder, stats)`` for ``verl_ext.data.cache.load_or_build`` that encodes on Ray."""

    def produce(encoder, stats: dict):
        import ray

        from verl_ext.data.datasets import new_stats

        if not ray.is_initialized():
            ray.init(address=address or os.environ.get("RAY_ADDRESS") or None, include_dashboard=False,
                     log_to_driver=False, ignore_reinit_error=True)
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # samples in row order, as a local build
        items = work_items(files, max_samples)
        n = concurrency or max(1, int(ray.cluster_resources().get("CPU", 1)))
        ds = ray.data.from_items(items).map_batches(
            EncodeItems, fn_constructor_args=(encoder, files), batch_size=1, concurrency=min(n, max(1, len(items))),
            num_cpus=1,
        )
        stats.update(new_stats())
        stats["workers"] = f"ray:{n}"
        from tqdm import tqdm

        bar = tqdm(total=sum(int(i["take"]) for i in items), desc="verl-ext: tokenizing on ray", unit="row")
        try:
            for row in ds.iter_rows():
                for k, v in json.loads(row["stats"]).items():
                    stats[k] = stats.get(k, 0) + v
                bar.update(json.loads(row["stats"]).get("rows", 0))
                reader = pa.ipc.open_stream(pa.py_buffer(row["ipc"]))
                yield from reader
        except Exception as e:  # a worker's DataError arrives wrapped in a RayTaskError
            cause = _data_error(e)
            if cause is not None:
                raise cause from None
            raise
        finally:
            bar.close()

    return produce


def _data_error(e: BaseException) -> DataError | None:
    seen = e
    while seen is not None:
        if isinstance(seen, DataError):
            return DataError(str(seen))
        cause = getattr(seen, "cause", None) or seen.__cause__
        if cause is None and "DataError" in str(seen):
            line = [ln for ln in str(seen).splitlines() if "DataError:" in ln]
            return DataError(line[-1].split("DataError:", 1)[1].strip()) if line else None
        seen = cause
    return None
