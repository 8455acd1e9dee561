"""Tests for ple.data_files.load_records: every local format, exact locations, clear errors."""

from __future__ import annotations

import gzip
import json

import pytest

from ple.data_files import Record, load_records
from ple.errors import UserError


def test_jsonl_skips_blank_lines_and_keeps_real_line_numbers(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n\n   \n{"a": 2, "b": "x"}\n\n{"a": 3}\n', encoding="utf-8")
    records = load_records(str(path))
    assert records == [
        Record({"a": 1}, f"{path}:1"),
        Record({"a": 2, "b": "x"}, f"{path}:4"),
        Record({"a": 3}, f"{path}:6"),
    ]


def test_jsonl_without_trailing_newline(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}', encoding="utf-8")
    assert [r.data["a"] for r in load_records(str(path))] == [1, 2]


def test_jsonl_gz(tmp_path):
    path = tmp_path / "d.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write('{"chosen": "c1", "rejected": "r1"}\n\n{"chosen": "c2", "rejected": "r2"}\n')
    records = load_records(str(path))
    assert records == [
        Record({"chosen": "c1", "rejected": "r1"}, f"{path}:1"),
        Record({"chosen": "c2", "rejected": "r2"}, f"{path}:3"),
    ]


def test_jsonl_gz_not_gzip_is_user_error(tmp_path):
    path = tmp_path / "d.jsonl.gz"
    path.write_text('{"a": 1}\n', encoding="utf-8")
    with pytest.raises(UserError) as err:
        load_records(str(path))
    assert str(err.value).startswith(f"{path}: cannot read")


def test_json_list_of_objects(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"prompt": "p1"}, {"prompt": "p2", "n": 2}]), encoding="utf-8")
    records = load_records(str(path))
    assert records == [
        Record({"prompt": "p1"}, f"{path} record 1"),
        Record({"prompt": "p2", "n": 2}, f"{path} record 2"),
    ]


@pytest.mark.parametrize("content", ['{"prompt": "p"}', '[{"prompt": "p"}, 3]', '"text"'])
def test_json_not_a_list_of_objects(tmp_path, content):
    path = tmp_path / "d.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError) as err:
        load_records(str(path))
    assert str(err.value) == f"{path}: a .json data file must be a list of objects"


def test_json_malformed_names_line(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[\n{"a": 1},\n{"a": \n', encoding="utf-8")
    with pytest.raises(UserError) as err:
        load_records(str(path))
    assert str(err.value).startswith(f"{path}:4: malformed JSON")


def test_parquet(tmp_path):
    import datasets

    path = tmp_path / "d.parquet"
    datasets.Dataset.from_list([{"text": "good film", "label": 1},
                                {"text": "bad film", "label": 0}]).to_parquet(str(path))
    records = load_records(str(path))
    assert records == [
        Record({"text": "good film", "label": 1}, f"{path} row 1"),
        Record({"text": "bad film", "label": 0}, f"{path} row 2"),
    ]


def test_parquet_corrupt_is_user_error(tmp_path):
    path = tmp_path / "d.parquet"
    path.write_bytes(b"this is not parquet at all")
    with pytest.raises(UserError) as err:
        load_records(str(path))
    assert str(err.value).startswith(f"{path}: cannot read as Parquet (")


def test_malformed_third_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3,,}\n{"a": 4}\n', encoding="utf-8")
    with pytest.raises(UserError) as err:
        load_records(str(path))
    msg = str(err.value)
    assert f"{path}:3" in msg
    assert msg.startswith(f"{path}:3: malformed JSON")


def test_malformed_line_counts_blank_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n\nnot json\n', encoding="utf-8")
    with pytest.raises(UserError) as err:
        load_records(str(path))
    assert str(err.value).startswith(f"{path}:3: malformed JSON")


@pytest.mark.parametrize("line", ["[1, 2]", '"a string"', "42", "null"])
def test_line_not_an_object(tmp_path, line):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(UserError) as err:
        load_records(str(path))
    assert str(err.value) == f"{path}:2: each line must be a JSON object"


@pytest.mark.parametrize("name", ["missing.jsonl", "missing.jsonl.gz", "missing.json",
                                  "missing.parquet"])
@pytest.mark.parametrize("hub", [False, True])
def test_missing_local_file(tmp_path, name, hub):
    source = str(tmp_path / name)
    with pytest.raises(UserError) as err:
        load_records(source, hub_dataset=hub)
    assert str(err.value) == f"data file {source} does not exist"


def test_missing_name_without_hub_is_missing_file():
    with pytest.raises(UserError) as err:
        load_records("someone/no-such-dataset")
    assert str(err.value) == "data file someone/no-such-dataset does not exist"


def test_directory_is_not_a_hub_name(tmp_path):
    with pytest.raises(UserError) as err:
        load_records(str(tmp_path), hub_dataset=True)
    assert str(err.value) == f"data file {tmp_path} does not exist"


@pytest.mark.parametrize("name", ["d.csv", "d.txt", "data"])
def test_unknown_suffix_of_existing_file(tmp_path, name):
    path = tmp_path / name
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(UserError) as err:
        load_records(str(path))
    msg = str(err.value)
    assert msg.startswith(f"{path}: unknown data format")
    assert ".jsonl, .jsonl.gz, .json, .parquet" in msg


def test_hub_dataset_offline_fails_with_user_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # The libraries read these at import; patch the module-level flags too if loaded.
    import datasets
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(UserError) as err:
        load_records("someone/no-such-dataset", hub_dataset=True)
    msg = str(err.value)
    assert msg.startswith("data `someone/no-such-dataset`: not a local file")
    assert "Hugging Face hub" in msg
