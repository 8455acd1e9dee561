"""Read data records from local files (JSONL, gzipped JSONL, JSON, Parquet) or the hub.

Every record remembers where it came from ("file:line" for JSONL), so a bad record can be
reported exactly.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

from ple.errors import UserError

LOCAL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".parquet")


@dataclass(frozen=True)
class Record:
    data: dict
    where: str  # "path:line" or "path record N"


def _read_jsonl(path: Path) -> list[Record]:
    opener = gzip.open if path.name.endswith(".gz") else open
    records = []
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserError(f"{where}: malformed JSON ({e.msg})") from None
                if not isinstance(data, dict):
                    raise UserError(f"{where}: each line must be a JSON object")
                records.append(Record(data, where))
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise UserError(f"{path}: cannot read ({e})") from None
    return records


def _read_json(path: Path) -> list[Record]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise UserError(f"{path}: a .json data file must be a list of objects")
    return [Record(d, f"{path} record {i + 1}") for i, d in enumerate(data)]


def _read_parquet(path: Path) -> list[Record]:
    import datasets

    try:
        rows = datasets.Dataset.from_parquet(str(path))
    except Exception as e:  # noqa: BLE001 - pyarrow raises many types for a bad file
        raise UserError(f"{path}: cannot read as Parquet ({e.__class__.__name__})") from None
    return [Record(dict(r), f"{path} row {i + 1}") for i, r in enumerate(rows)]


def _read_hub(name: str) -> list[Record]:
    import datasets

    try:
        rows = datasets.load_dataset(name, split="train")
    except Exception as e:  # noqa: BLE001 - offline, unknown name, auth: all the same to a user
        raise UserError(f"data `{name}`: not a local file, and loading it from the Hugging "
                        f"Face hub failed ({e.__class__.__name__})") from None
    return [Record(dict(r), f"{name} row {i + 1}") for i, r in enumerate(rows)]


def load_records(source: str, hub_dataset: bool = False) -> list[Record]:
    """All records of a data file, or of a hub dataset's train split when `hub_dataset`."""
    path = Path(source)
    if path.is_file():
        name = path.name
        if name.endswith((".jsonl", ".jsonl.gz")):
            return _read_jsonl(path)
        if name.endswith(".json"):
            return _read_json(path)
        if name.endswith(".parquet"):
            return _read_parquet(path)
        raise UserError(f"{source}: unknown data format (use {', '.join(LOCAL_SUFFIXES)})")
    if source.endswith(LOCAL_SUFFIXES) or path.is_dir() or not hub_dataset:
        raise UserError(f"data file {source} does not exist")
    return _read_hub(source)
