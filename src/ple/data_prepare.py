"""`ple data prepare`: build ple's data folder from the public datasets.

The built-in rewards (`imdb-sentiment`, `hh-preference`), the study configs and the
benchmarks read files from a data folder ($PLE_DATA_DIR; docs/data.md has the layout). A
source checkout finds them in `shared/data` beside it; anyone else builds the same layout
with this command, from the datasets on the Hugging Face hub (or a local copy of one in the
same layout, which is how the tests run it offline):

    imdb/train.jsonl, imdb/test.jsonl              stanfordnlp/imdb
    hh-rlhf/<subset>/test.jsonl.gz                 Anthropic/hh-rlhf
    tldr/sft_{train,test}.jsonl                    trl-lib/tldr (validation split)
    tldr/pref_{train,test}.jsonl                   trl-internal-testing/tldr-preference-trl-style

Each dataset's folder is written whole into a temporary folder and then renamed into place,
so an interrupted run leaves no half-written folder behind; `prepared.json` records where
each file came from and how many rows it holds.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import re
import shutil
import tempfile
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ple.errors import UserError
from ple.paths import check_writable_dir

HH_SUBSETS = ("harmless-base", "helpful-base", "helpful-online", "helpful-rejection-sampled")
# The prompt format of OpenAI's TL;DR and trl-lib/tldr; summaries follow it after one space.
TLDR_FORMAT = "SUBREDDIT: r/{subreddit}\n\nTITLE: {title}\n\nPOST: {post}\n\nTL;DR:"
TLDR_PROMPT = re.compile(r"SUBREDDIT: r/(?P<subreddit>.*?)\n\nTITLE: (?P<title>.*?)\n\n"
                         r"POST: (?P<post>.*)\n\nTL;DR:", re.DOTALL)


def default_output_dir() -> str:
    """$PLE_DATA_DIR, else ~/.cache/ple/data (or $PLE_CACHE_DIR/data): where ple's built-in
    rewards look when no source checkout's shared/data is beside the package."""
    from ple.models import cache_dir

    return os.environ.get("PLE_DATA_DIR") or str(cache_dir() / "data")


def _doc(text: str) -> dict:
    return {"help": text}


@dataclass
class DataPrepareConfig:
    """Every setting of `ple data prepare` (each is also a flag: `--output-dir` etc.)."""

    output_dir: str | None = field(default=None, metadata=_doc(
        "The data folder to build. Default: $PLE_DATA_DIR, else ~/.cache/ple/data, where "
        "ple's built-in rewards look when no source checkout's shared/data is beside it."))
    datasets: str = field(default="imdb,hh,tldr", metadata=_doc(
        "Comma-separated: which of imdb, hh and tldr to build. Default all three."))
    imdb_source: str = field(default="stanfordnlp/imdb", metadata=_doc(
        "IMDb: a hub dataset with `train` and `test` splits of `text` and `label` (1 "
        "positive), or a local folder in the same layout. Default stanfordnlp/imdb."))
    hh_source: str = field(default="Anthropic/hh-rlhf", metadata=_doc(
        "HH-RLHF: a hub dataset (or local folder) with one folder per subset (harmless-base, "
        "helpful-base, helpful-online, helpful-rejection-sampled), each with a `test` split "
        "of `chosen` and `rejected` transcripts. Default Anthropic/hh-rlhf."))
    tldr_source: str = field(default="trl-lib/tldr", metadata=_doc(
        "TL;DR posts and reference summaries: a hub dataset (or local folder) whose "
        "`validation` split has `prompt` (SUBREDDIT/TITLE/POST/TL;DR: format) and "
        "`completion`. Default trl-lib/tldr."))
    tldr_pairs_source: str = field(
        default="trl-internal-testing/tldr-preference-trl-style", metadata=_doc(
            "TL;DR human comparisons: a hub dataset (or local folder) whose `validation` "
            "split has OpenAI's comparison columns `info`, `summaries`, `choice`, `batch`, "
            "`split` and `extra`. Default trl-internal-testing/tldr-preference-trl-style "
            "(the paper's TL;DR preference data)."))
    imdb_train_per_class: int = field(default=5000, metadata=_doc(
        "IMDb reviews drawn per class (positive, negative) from the train split, with seed "
        "0. Default 5000, as in shared/data (10,000 in all)."))
    imdb_test_per_class: int = field(default=2500, metadata=_doc(
        "IMDb reviews drawn per class from the test split, with seed 1. Default 2500 "
        "(5,000 in all)."))
    hh_harmless_pairs: int = field(default=1800, metadata=_doc(
        "harmless-base keeps its first N test pairs; the other subsets keep all. Default "
        "1800, as in shared/data (the built-in `hh-preference` recipe trains on them)."))
    tldr_posts: int = field(default=1945, metadata=_doc(
        "TL;DR: the first N posts of the validation split, with their reference summaries. "
        "Default 1945, as many as in shared/data."))
    tldr_batches: str = field(default="batch13,batch18", metadata=_doc(
        "TL;DR comparisons: OpenAI's labelling batches to keep, comma-separated (empty: "
        "every TL;DR batch of the validation split, about 83,000 comparisons). Default "
        "batch13,batch18, the 1,771 comparisons of shared/data."))
    overwrite: bool = field(default=False, metadata=_doc(
        "Replace a dataset's folder that is already in --output-dir."))

    def __post_init__(self):
        self.output_dir = self.output_dir or default_output_dir()
        names = self.names()
        bad = [n for n in names if n not in DATASETS]
        if bad or not names:
            raise UserError(f"--datasets {self.datasets!r}: must name one or more of "
                            f"{', '.join(DATASETS)}, comma-separated")
        for key in ("imdb_train_per_class", "imdb_test_per_class", "hh_harmless_pairs",
                    "tldr_posts"):
            if getattr(self, key) < 1:
                raise UserError(f"--{key.replace('_', '-')} {getattr(self, key)}: must be >= 1")

    def names(self) -> list[str]:
        return [n.strip() for n in self.datasets.split(",") if n.strip()]

    def batches(self) -> set[str]:
        return {b.strip() for b in self.tldr_batches.split(",") if b.strip()}


# --- reading the public datasets ----------------------------------------------------------

def load_split(source: str, split: str, what: str, columns: tuple[str, ...],
               data_dir: str | None = None):
    """One split of a hub dataset or a local folder in its layout, with `columns` checked;
    any failure (no network, no such dataset or split) is one line naming the source."""
    import datasets

    try:
        ds = datasets.load_dataset(source, data_dir=data_dir, split=split)
    except Exception as e:  # noqa: BLE001 - hub, network and format errors have no common base
        where = f"{source}" + (f" ({data_dir})" if data_dir else "")
        first = (str(e).splitlines() or [""])[0][:200]
        raise UserError(f"{what}: cannot load split `{split}` of {where} "
                        f"({e.__class__.__name__}: {first})") from None
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise UserError(f"{what}: {source} split `{split}` has no column "
                        f"{', '.join(repr(c) for c in missing)} (it has "
                        f"{', '.join(ds.column_names)})")
    return ds


def imdb_rows(ds, per_class: int, seed: int) -> list[dict]:
    """`per_class` reviews of each label drawn with `seed`, shuffled together, as the shared
    slice was drawn: {"text", "label"}, the text stripped and its <br /> tags kept."""
    rng = random.Random(seed)
    chosen = []
    for label in (1, 0):
        idx = [i for i, y in enumerate(ds["label"]) if y == label]
        chosen += rng.sample(idx, min(per_class, len(idx)))
    rng.shuffle(chosen)
    return [{"text": ds[i]["text"].strip(), "label": int(ds[i]["label"])} for i in chosen]


def post_key(title: str, post: str) -> str:
    """The id of a Reddit post, shared by its SFT and comparison rows."""
    return hashlib.sha1((title + "\0" + post).encode("utf-8")).hexdigest()


def held_out(key: str) -> bool:
    """The split rule of shared/data/tldr: a post is a test post iff this holds, the same
    for the SFT and the comparison files, so no post is on both sides."""
    return int(key[:8], 16) % 100 < 20


def tldr_sft_rows(ds, n: int) -> tuple[list[dict], int]:
    """The first `n` posts with their reference summary, and how many prompts were skipped
    for not being in the TL;DR format."""
    rows, skipped = [], 0
    for record in ds.select(range(min(n, len(ds)))):
        m = TLDR_PROMPT.fullmatch(record["prompt"])
        if m is None:
            skipped += 1
            continue
        rows.append({"prompt": record["prompt"], "summary": " " + record["completion"].strip(),
                     "post_key": post_key(m["title"], m["post"]),
                     "subreddit": m["subreddit"]})
    return rows, skipped


def tldr_pair_rows(ds, batches: set[str]) -> tuple[list[dict], int]:
    """OpenAI's human comparisons of TL;DR summaries as prompt/chosen/rejected rows with
    their labelling metadata, and how many were skipped (another batch is not counted; a
    CNN/DM article or two identical summaries is)."""
    rows, skipped = [], 0
    for record in ds:
        if batches and record["batch"] not in batches:
            continue
        info, summaries, choice = record["info"], record["summaries"], record["choice"]
        chosen = summaries[choice]["text"].strip()
        rejected = summaries[1 - choice]["text"].strip()
        if not info.get("post") or chosen == rejected:
            skipped += 1
            continue
        confidence = (record.get("extra") or {}).get("confidence")
        rows.append({
            "prompt": TLDR_FORMAT.format(subreddit=info["subreddit"], title=info["title"],
                                         post=info["post"]),
            "chosen": " " + chosen, "rejected": " " + rejected,
            "post_key": post_key(info["title"], info["post"]), "reddit_id": info.get("id"),
            "subreddit": info["subreddit"], "chosen_policy": summaries[choice].get("policy"),
            "rejected_policy": summaries[1 - choice].get("policy"), "confidence": confidence,
            "preference_strength": None if confidence is None else abs(confidence - 5),
            "openai_batch": record["batch"], "openai_split": record.get("split")})
    return rows, skipped


# --- writing ------------------------------------------------------------------------------

def write_jsonl(path: Path, rows: list[dict]) -> None:
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    if path.suffix == ".gz":
        # mtime 0: the same rows give the same bytes, and so the same reward cache key.
        with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                    mtime=0) as f:
            f.write(lines)
    else:
        path.write_bytes(lines)


# (file under the dataset's folder, its rows, where they came from, which of them)
Files = list[tuple[str, list[dict], str, str]]


def imdb_files(cfg: DataPrepareConfig) -> Files:
    """IMDb's train and test reviews, a number of each label drawn with a fixed seed."""
    files = []
    for split, per_class, seed in (("train", cfg.imdb_train_per_class, 0),
                                   ("test", cfg.imdb_test_per_class, 1)):
        ds = load_split(cfg.imdb_source, split, "imdb", ("text", "label"))
        files.append((f"{split}.jsonl", imdb_rows(ds, per_class, seed), cfg.imdb_source,
                      f"split {split}: {per_class} reviews per label, seed {seed}"))
    return files


def hh_files(cfg: DataPrepareConfig) -> Files:
    """HH-RLHF's test pairs of each subset."""
    files = []
    for subset in HH_SUBSETS:
        ds = load_split(cfg.hh_source, "test", f"hh {subset}", ("chosen", "rejected"),
                        data_dir=subset)
        n = cfg.hh_harmless_pairs if subset == "harmless-base" else len(ds)
        rows = [{"chosen": r["chosen"], "rejected": r["rejected"]}
                for r in ds.select(range(min(n, len(ds))))]
        files.append((f"{subset}/test.jsonl.gz", rows, cfg.hh_source,
                      f"{subset}, split test, first {len(rows)} pairs"))
    return files


def tldr_files(cfg: DataPrepareConfig) -> Files:
    """TL;DR posts with their reference summaries, and human comparisons of summaries, each
    split into train and test by post (held_out)."""
    ds = load_split(cfg.tldr_source, "validation", "tldr", ("prompt", "completion"))
    rows, skipped = tldr_sft_rows(ds, cfg.tldr_posts)
    about = f"split validation, first {cfg.tldr_posts} posts ({skipped} not in the format)"
    files = [("sft_train.jsonl", [r for r in rows if not held_out(r["post_key"])],
              cfg.tldr_source, about),
             ("sft_test.jsonl", [r for r in rows if held_out(r["post_key"])],
              cfg.tldr_source, about)]
    ds = load_split(cfg.tldr_pairs_source, "validation", "tldr comparisons",
                    ("info", "summaries", "choice", "batch"))
    rows, skipped = tldr_pair_rows(ds, cfg.batches())
    about = (f"split validation, batches {cfg.tldr_batches or 'all'} ({skipped} skipped: "
             f"not a Reddit post, or identical summaries)")
    return files + [("pref_train.jsonl", [r for r in rows if not held_out(r["post_key"])],
                     cfg.tldr_pairs_source, about),
                    ("pref_test.jsonl", [r for r in rows if held_out(r["post_key"])],
                     cfg.tldr_pairs_source, about)]


@dataclass(frozen=True)
class Dataset:
    """One dataset --datasets can name: its folder and what goes in it."""

    folder: str  # under the data folder
    files: Callable[[DataPrepareConfig], Files]


# What --datasets can name, in the order they are built.
DATASETS = {"imdb": Dataset("imdb", imdb_files), "hh": Dataset("hh-rlhf", hh_files),
            "tldr": Dataset("tldr", tldr_files)}


def build(name: str, cfg: DataPrepareConfig, folder: Path) -> list[dict]:
    """Write dataset `name`'s files into `folder`; one provenance entry per file."""
    files = DATASETS[name].files(cfg)
    provenance = []
    for file, rows, source, about in files:
        if not rows:
            raise UserError(f"{name}: {source} gave no rows for {file} ({about})")
        path = folder / file
        path.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(path, rows)
        provenance.append({"file": f"{DATASETS[name].folder}/{file}", "rows": len(rows),
                           "source": source, "selection": about})
    return provenance


def prepare(cfg: DataPrepareConfig) -> list[dict]:
    """Build the datasets `cfg` names in cfg.output_dir; returns the provenance entries of
    the files written (also merged into OUTPUT_DIR/prepared.json)."""
    out = Path(cfg.output_dir)
    check_writable_dir(out, "--output-dir")
    names = cfg.names()
    for name in names:  # refuse before any download, not after the first dataset
        target = out / DATASETS[name].folder
        if target.exists() and not cfg.overwrite:
            raise UserError(f"{target} exists; give --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    record_path = out / "prepared.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {"files": []}
    written = []
    for name in names:
        folder = DATASETS[name].folder
        work = Path(tempfile.mkdtemp(dir=out, prefix=f".{folder}.tmp-"))
        try:
            entries = build(name, cfg, work)
            target = out / folder
            if target.exists():
                shutil.rmtree(target)
            work.rename(target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        when = datetime.now(timezone.utc).isoformat(timespec="seconds")
        entries = [{**e, "prepared": when} for e in entries]
        record["files"] = [f for f in record["files"]
                           if not f["file"].startswith(folder + "/")] + entries
        record_path.write_text(json.dumps(record, indent=1) + "\n")
        written += entries
    return written


# --- the command --------------------------------------------------------------------------

def add_arguments(sub) -> None:
    """Add `data prepare` to the subparsers `sub` of the ple command."""
    data = sub.add_parser("data", help="data for the built-in rewards and the studies: "
                          "`ple data prepare`")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    prepare_parser = data_sub.add_parser(
        "prepare", help="build the data folder (IMDb, HH-RLHF, TL;DR) from the public "
        "datasets", description="Build ple's data folder from the public datasets on the "
        "Hugging Face hub (docs/data.md).")
    for f in fields(DataPrepareConfig):  # f.type is a string (postponed annotations)
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            prepare_parser.add_argument(flag, dest=f.name, action="store_true",
                                        help=f.metadata["help"])
            continue
        prepare_parser.add_argument(flag, dest=f.name, type=int if f.type == "int" else str,
                                    default=f.default, help=f.metadata["help"])


def run(args: argparse.Namespace) -> None:
    cfg = DataPrepareConfig(**{f.name: getattr(args, f.name) for f in fields(DataPrepareConfig)})
    entries = prepare(cfg)
    for e in entries:
        print(f"{cfg.output_dir}/{e['file']}: {e['rows']} rows from {e['source']} "
              f"({e['selection']})")
    from ple.rewards.builtin import data_root

    if Path(data_root()).resolve() != Path(cfg.output_dir).resolve():
        print(f"ple reads its data from {data_root()}; to use this folder: "
              f"export PLE_DATA_DIR={Path(cfg.output_dir).resolve()}")
