"""benchmarks/principle_probe.py and the probes' shared gap (benchmarks/probelib.py)."""

import json
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))


def test_paired_gap_by_hand():
    from probelib import paired_gap

    got = paired_gap([0.0, 0.5, 1.0], [1.0, 0.4, 1.0], tau=0.0)
    assert got["gap"][0] == pytest.approx((1.0 - 0.1 + 0.0) / 3)  # paired by query
    assert got["over_tau"][0] == pytest.approx(1 / 3)  # a tie is not a win
    assert paired_gap([0.0, 0.5, 1.0], [1.0, 0.4, 1.0], tau=-0.2)["over_tau"][0] == 1.0


@pytest.mark.slow
def test_principle_probe_on_tiny_compares_every_shipped_principle(tmp_path, capsys):
    from principle_probe import main
    from ple.tasks import TASKS

    out = tmp_path / "probe.json"
    assert main(["--model", "tiny", "--openings", "3", "--max-new-tokens", "6",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    names = ["plain", *TASKS["imdb"].principles()]
    assert [r["principle"] for r in result["rows"]] == names
    for row in result["rows"]:
        assert f"| {row['principle']} | 3 | " in printed
        examples = row["examples"]
        assert row["n"] == len(examples) == 3
        assert row["text"] == (None if row["principle"] == "plain"
                               else TASKS["imdb"].principles()[row["principle"]])
        gaps = [e["s_prime"] - e["s"] for e in examples]
        assert row["gap"][0] == pytest.approx(sum(gaps) / 3)
        assert row["wins"][0] == pytest.approx(sum(g > 0 for g in gaps) / 3)
        # Every row is paired with the same plain responses.
        assert [e["y"] for e in examples] == [e["y"] for e in result["rows"][0]["examples"]]
    # The plain row draws a second plain sample, not y again.
    plain = result["rows"][0]["examples"]
    assert [e["y_prime"] for e in plain] != [e["y"] for e in plain]
