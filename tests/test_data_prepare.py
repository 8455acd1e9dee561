"""`ple data prepare`, offline: tiny local copies of the public datasets, in the hub
repositories' own layouts and schemas, go through the same `datasets.load_dataset` path a hub
name does, and come out in the layout of shared/data that ple's readers take."""

import gzip
import json
from pathlib import Path

import pytest

from conftest import run_ple

POST = "SUBREDDIT: r/{s}\n\nTITLE: {t}\n\nPOST: {p}\n\nTL;DR:"


def parquet(path: Path, columns: dict) -> None:
    import datasets

    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict(columns).to_parquet(str(path))


def jsonl_gz(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hub")
    # stanfordnlp/imdb: plain_text/{train,test,unsupervised}-*.parquet of text, label.
    for split in ("train", "test", "unsupervised"):
        parquet(root / "imdb" / "plain_text" / f"{split}-00000-of-00001.parquet",
                {"text": [f"  {split} review {i}<br /><br />more  " for i in range(12)],
                 "label": [i % 2 if split != "unsupervised" else -1 for i in range(12)]})
    # Anthropic/hh-rlhf: one folder per subset, {train,test}.jsonl.gz of chosen, rejected.
    for subset in ("harmless-base", "helpful-base", "helpful-online",
                   "helpful-rejection-sampled"):
        for split in ("train", "test"):
            jsonl_gz(root / "hh" / subset / f"{split}.jsonl.gz",
                     [{"chosen": f"\n\nHuman: {subset} {split} {i}?\n\nAssistant: yes",
                       "rejected": f"\n\nHuman: {subset} {split} {i}?\n\nAssistant: no"}
                      for i in range(5)])
    # trl-lib/tldr: data/{train,validation,test}-*.parquet of prompt, completion.
    posts = [(f"sub{i % 3}", f"Title {i}", f"I wrote post {i}.\n\nIt has two paragraphs.")
             for i in range(40)]
    for split in ("train", "validation"):
        parquet(root / "tldr" / "data" / f"{split}-00000-of-00001.parquet",
                {"prompt": ["not a post"] + [POST.format(s=s, t=t, p=p) for s, t, p in posts],
                 "completion": [" x"] + [f" summary {i} " for i in range(40)]})
    # trl-internal-testing/tldr-preference-trl-style: OpenAI's comparison columns.
    n = 30
    info = [{"id": f"t3_{i}", "post": posts[i][2], "title": posts[i][1],
             "subreddit": posts[i][0], "site": None, "article": None} for i in range(n)]
    info[5] = {"id": None, "post": None, "title": None, "subreddit": None, "site": "cnn",
               "article": "An article."}  # a CNN/DM row in a kept batch: skipped
    summaries = [[{"text": f" first {i}", "policy": "sup4", "note": None},
                  {"text": f" second {i}" if i != 7 else f" first {i}", "policy": "ref",
                   "note": None}] for i in range(n)]  # row 7: identical summaries, skipped
    parquet(root / "pairs" / "data" / "validation-00000-of-00001.parquet",
            {"prompt": ["unused"] * n, "info": info, "summaries": summaries,
             "choice": [i % 2 for i in range(n)], "worker": ["w"] * n,
             "batch": ["batch13" if i < 20 else "batch3" for i in range(n)],
             "split": ["valid1"] * n,
             "extra": [{"confidence": None if i == 3 else 1 + i % 9} for i in range(n)]})
    return {"imdb": root / "imdb", "hh": root / "hh", "tldr": root / "tldr",
            "pairs": root / "pairs"}


def prepare(sources, out, *extra):
    return run_ple("data", "prepare", "--output-dir", out,
                   "--imdb-source", sources["imdb"], "--hh-source", sources["hh"],
                   "--tldr-source", sources["tldr"], "--tldr-pairs-source", sources["pairs"],
                   "--imdb-train-per-class", 4, "--imdb-test-per-class", 3,
                   "--hh-harmless-pairs", 2, "--tldr-posts", 35, *extra)


def rows(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def prepared(sources, tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "ple-data"
    result = prepare(sources, out)
    assert result.returncode == 0, result.stderr[-2000:]
    return out, result


def test_builds_the_layout_of_shared_data(prepared):
    out, result = prepared
    for name in ("imdb/train.jsonl", "imdb/test.jsonl", "tldr/sft_train.jsonl",
                 "tldr/sft_test.jsonl", "tldr/pref_train.jsonl", "tldr/pref_test.jsonl",
                 *(f"hh-rlhf/{s}/test.jsonl.gz" for s in
                   ("harmless-base", "helpful-base", "helpful-online",
                    "helpful-rejection-sampled"))):
        assert (out / name).is_file(), name
        assert f"{out}/{name}: " in result.stdout
    record = json.loads((out / "prepared.json").read_text())
    assert {f["file"]: f["rows"] for f in record["files"]}["imdb/train.jsonl"] == 8
    assert not list(out.glob(".*tmp-*"))  # no temporary folder left behind


def test_imdb_is_balanced_stripped_and_from_its_split(prepared):
    out, _ = prepared
    train, test = rows(out / "imdb" / "train.jsonl"), rows(out / "imdb" / "test.jsonl")
    assert [r["label"] for r in train].count(1) == 4 and len(train) == 8
    assert [r["label"] for r in test].count(0) == 3 and len(test) == 6
    assert all(r["text"].startswith("train review") and r["text"].endswith("more")
               and "<br />" in r["text"] for r in train)
    assert all(set(r) == {"text", "label"} for r in train + test)
    assert all(r["text"].startswith("test review") for r in test)


def test_hh_keeps_the_test_split_and_the_first_harmless_pairs(prepared):
    out, _ = prepared
    harmless = rows(out / "hh-rlhf" / "harmless-base" / "test.jsonl.gz")
    assert [r["chosen"] for r in harmless] == [
        f"\n\nHuman: harmless-base test {i}?\n\nAssistant: yes" for i in range(2)]
    helpful = rows(out / "hh-rlhf" / "helpful-online" / "test.jsonl.gz")
    assert len(helpful) == 5 and all(set(r) == {"chosen", "rejected"} for r in helpful)


def test_tldr_posts_and_pairs_split_by_post_and_never_on_both_sides(prepared):
    from ple.data_prepare import held_out, post_key

    out, _ = prepared
    sft = {s: rows(out / "tldr" / f"sft_{s}.jsonl") for s in ("train", "test")}
    pref = {s: rows(out / "tldr" / f"pref_{s}.jsonl") for s in ("train", "test")}
    # The first 35 rows, less the one that is not a post.
    assert len(sft["train"]) + len(sft["test"]) == 34
    # 20 comparisons in batch13, less the CNN/DM article and the identical pair.
    assert len(pref["train"]) + len(pref["test"]) == 18
    for split, test_side in (("train", False), ("test", True)):
        for r in sft[split] + pref[split]:
            assert held_out(r["post_key"]) is test_side
    test_keys = {r["post_key"] for r in sft["test"] + pref["test"]}
    assert not test_keys & {r["post_key"] for r in sft["train"] + pref["train"]}
    r = next(r for r in sft["train"] + sft["test"] if r["subreddit"] == "sub1")
    assert list(r) == ["prompt", "summary", "post_key", "subreddit"]
    assert r["summary"].startswith(" summary ") and not r["summary"].endswith(" ")
    i = int(r["prompt"].split("TITLE: Title ")[1].split("\n")[0])
    assert r["post_key"] == post_key(f"Title {i}", f"I wrote post {i}.\n\nIt has two "
                                                    f"paragraphs.")
    pairs = {p["reddit_id"]: p for p in pref["train"] + pref["test"]}
    one, four = pairs["t3_1"], pairs["t3_4"]
    assert (one["chosen"], one["rejected"]) == (" second 1", " first 1")  # choice 1
    assert (one["chosen_policy"], one["rejected_policy"]) == ("ref", "sup4")
    assert one["prompt"] == POST.format(s="sub1", t="Title 1",
                                        p="I wrote post 1.\n\nIt has two paragraphs.")
    assert (four["confidence"], four["preference_strength"]) == (5, 0)
    assert (pairs["t3_3"]["confidence"], pairs["t3_3"]["preference_strength"]) == (None, None)
    assert one["openai_batch"] == "batch13" and one["openai_split"] == "valid1"


def test_ple_reads_what_it_built(prepared, monkeypatch):
    from ple.data_files import load_records
    from ple.hh_format import split_hh
    from ple.rewards.builtin import RECIPES, cache_key, recipe_config

    out, _ = prepared
    monkeypatch.setenv("PLE_DATA_DIR", str(out))
    for name in ("tiny-imdb-sentiment", "tiny-hh-preference"):
        assert len(cache_key(RECIPES[name])) == 12
        cfg = recipe_config(name, "unused")
        for path in cfg.data.split(","):
            assert Path(path).is_file() and Path(path).is_relative_to(out)
    records = load_records(str(out / "hh-rlhf" / "helpful-base" / "test.jsonl.gz"))
    prompt, response = split_hh(records[0].data["chosen"], records[0])
    assert prompt.endswith("Assistant:") and response.strip() == "yes"


def test_same_rows_same_bytes(prepared, sources, tmp_path):
    """Reward models are cached under a hash of their data files' bytes: preparing the same
    rows twice must give the same files, or every build would retrain the rewards."""
    out, _ = prepared
    again = tmp_path / "again"
    assert prepare(sources, again, "--datasets", "hh,imdb").returncode == 0
    for name in ("imdb/train.jsonl", "hh-rlhf/harmless-base/test.jsonl.gz"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name


def test_existing_folder_needs_overwrite(sources, tmp_path):
    out = tmp_path / "d"
    assert prepare(sources, out, "--datasets", "hh").returncode == 0
    (out / "hh-rlhf" / "stale.txt").write_text("from before")
    result = prepare(sources, out, "--datasets", "imdb,hh")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"ple: error: {out / 'hh-rlhf'} exists; give --overwrite to replace it"]
    assert not (out / "imdb").exists()  # refused before building anything
    assert prepare(sources, out, "--datasets", "hh", "--overwrite").returncode == 0
    assert not (out / "hh-rlhf" / "stale.txt").exists()


@pytest.mark.parametrize("flags,message", [
    (["--datasets", "imdb,wiki"], "--datasets 'imdb,wiki': must name one or more of imdb, hh, "
                                  "tldr, comma-separated"),
    (["--tldr-posts", "0"], "--tldr-posts 0: must be >= 1"),
    (["--datasets", "imdb", "--imdb-source", "no-such-org/no-such-dataset"],
     "imdb: cannot load split `train` of no-such-org/no-such-dataset (ConnectionError"),
    (["--datasets", "tldr", "--tldr-source", "IMDB"],
     "tldr: cannot load split `validation` of"),
])
def test_bad_input_is_one_line_and_writes_nothing(flags, message, sources, tmp_path):
    if flags[-1] == "IMDB":  # a dataset of another schema, given as the TL;DR source
        flags = [*flags[:-1], str(sources["imdb"])]
    out = tmp_path / "d"
    result = prepare(sources, out, *flags)
    assert result.returncode == 2, result.stderr[-1500:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not (out / "imdb").exists() and not (out / "tldr").exists()


def test_default_folder_is_where_the_rewards_look(tmp_path, monkeypatch):
    """Installed away from a checkout (no shared/data beside it) and without $PLE_DATA_DIR,
    the rewards read the folder `ple data prepare` writes by default."""
    from ple.data_prepare import DataPrepareConfig
    from ple.rewards import builtin

    monkeypatch.delenv("PLE_DATA_DIR", raising=False)
    monkeypatch.setenv("PLE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(builtin, "CHECKOUT_DATA", tmp_path / "no-checkout" / "shared" / "data")
    assert builtin.data_root() == tmp_path / "cache" / "data"
    assert DataPrepareConfig().output_dir == str(tmp_path / "cache" / "data")
    monkeypatch.setenv("PLE_DATA_DIR", str(tmp_path / "mine"))
    assert builtin.data_root() == tmp_path / "mine"
    assert DataPrepareConfig().output_dir == str(tmp_path / "mine")
