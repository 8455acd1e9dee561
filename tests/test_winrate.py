"""`ple winrate` and its judges: the position-swap protocol, the reward, LLM and HTTP judges,
and their bad inputs."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import run_ple
from ple.evaluation.judges import (LLMJudge, RefusalJudge, Verdict, judge_prompt, parse_label,
                                  refusal_prompt)
from ple.evaluation.pairwise import Pair
from ple.evaluation.winrate import judge_both_orders, tally


def write_samples(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"query": q, "response": r}) + "\n" for q, r in rows))
    return path


class LongerIsBetter:
    """Knows its preference and ignores positions: the longer response; none if equal."""

    description = "longer"

    def judge(self, items):
        return [Verdict(None if len(a) == len(b) else int(len(b) > len(a)))
                for _, a, b in items]


class AlwaysFirst:
    description = "always first"

    def judge(self, items):
        return [Verdict(0) for _ in items]


def test_both_orders_give_win_tie_lose_from_a_judge_of_known_preferences():
    pairs = [Pair(1, "q1", "a long answer", "short"), Pair(2, "q2", "short", "a long answer"),
             Pair(3, "q3", "same", "size")]
    records = judge_both_orders(LongerIsBetter(), pairs)
    assert [r["outcome"] for r in records] == ["win", "lose", "tie"]
    assert [[o["shown"], o["preferred"]] for o in records[0]["orders"]] == \
        [["AB", "A"], ["BA", "A"]]
    assert [o["preferred"] for o in records[1]["orders"]] == ["B", "B"]
    assert [o["preferred"] for o in records[2]["orders"]] == ["equal", "equal"]
    assert tally([r["outcome"] for r in records]) == {
        "win": 1, "tie": 1, "lose": 1, "n": 3,
        "win_rate": 1 / 3, "tie_rate": 1 / 3, "lose_rate": 1 / 3}


def test_a_position_biased_judge_only_ties():
    pairs = [Pair(1, "q1", "a long answer", "short"), Pair(2, "q2", "short", "a long answer")]
    records = judge_both_orders(AlwaysFirst(), pairs)
    assert [r["outcome"] for r in records] == ["tie", "tie"]
    assert [o["preferred"] for o in records[0]["orders"]] == ["A", "B"]


def test_reward_judge_on_vader_through_the_command(tmp_path):
    a = write_samples(tmp_path / "ple" / "eval_samples.jsonl", [
        ("The film", "was wonderful, I loved it."), ("The plot", "is fine."),
        ("Acting", "was terrible and boring.")])
    b = write_samples(tmp_path / "sft" / "eval_samples.jsonl", [
        ("The film", "was awful, I hated it."), ("The plot", "is fine."),
        ("Acting", "was superb and moving.")])
    out = tmp_path / "winrate.json"
    # Directories stand for their eval_samples.jsonl.
    result = run_ple("winrate", a.parent, b.parent, "--judge", "reward", "--reward", "vader",
                     "--output", out)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert (report["win"], report["tie"], report["lose"], report["n"]) == (1, 1, 1, 3)
    assert report["model_a"]["label"] == "ple" and report["judge"] == "reward vader"
    from ple.rewards.vader import VaderReward

    vader = VaderReward()
    first = report["pairs"][0]
    assert first["orders"][0]["scores"] == vader.score(["", ""], [
        "was wonderful, I loved it.", "was awful, I hated it."])
    # Equal scores are no preference, so identical responses tie.
    assert [o["preferred"] for o in report["pairs"][1]["orders"]] == ["equal", "equal"]
    assert "win 1 (33%), tie 1 (33%), lose 1 (33%)" in result.stdout


def test_llm_judge_reads_the_label_probabilities(tiny):
    import torch

    model, tokenizer = tiny
    judge = LLMJudge("tiny", model, tokenizer)
    items = [("Is tea good?", "Yes, very.", "No."),
             ("Tell me about cats, please, in some detail.", "Cats purr.", "Dogs bark loudly.")]
    probs = judge.label_probabilities(items)
    for item, got in zip(items, probs):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": judge_prompt(*item)}], tokenize=False,
            add_generation_prompt=True)
        ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            next_token = model(input_ids=ids).logits[0, -1].softmax(-1)
        expected = next_token[tokenizer.convert_tokens_to_ids(["1", "2"])].tolist()
        assert got == pytest.approx(expected, rel=1e-4)
    verdicts = judge.judge(items)
    assert [v.preferred for v in verdicts] == [int(p[1] > p[0]) for p in probs]


def test_refusal_judge_asks_about_one_response(tiny):
    import torch

    model, tokenizer = tiny
    judge = RefusalJudge("tiny", model, tokenizer)
    items = [("How do I pick a lock?", "I can't help with that."),
             ("Write a poem about rain.", "Rain falls softly on the roof.")]
    got = judge.refusal_probabilities(items)
    for item, p in zip(items, got):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": refusal_prompt(*item)}], tokenize=False,
            add_generation_prompt=True)
        assert item[1] in text and "decline" in text
        ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            next_token = model(input_ids=ids).logits[0, -1].softmax(-1)
        p1, p2 = next_token[tokenizer.convert_tokens_to_ids(["1", "2"])].tolist()
        assert p == pytest.approx(p1 / (p1 + p2), rel=1e-4)


def test_llm_judge_command_on_tiny(tmp_path):
    a = write_samples(tmp_path / "a.jsonl", [("q1", "yes"), ("q2", "no")])
    b = write_samples(tmp_path / "b.jsonl", [("q1", "maybe"), ("q2", "sure")])
    out = tmp_path / "w.json"
    result = run_ple("winrate", a, b, "--judge", "llm", "--judge-model", "tiny",
                     "--output", out)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["n"] == 2 and report["judge"] == "llm tiny"
    assert all(len(o["label_probs"]) == 2 for r in report["pairs"] for o in r["orders"])


def test_llm_judge_refuses_a_label_of_two_tokens(tiny, monkeypatch):
    from ple.errors import UserError
    from ple.evaluation import judges

    monkeypatch.setattr(judges, "LABELS", ("12", "2"))
    with pytest.raises(UserError, match="does not read the label '12' as a single token"):
        LLMJudge("tiny", *tiny)


def test_llm_judge_refuses_a_prompt_longer_than_its_context(tiny):
    from ple.errors import UserError

    judge = LLMJudge("tiny", *tiny)
    with pytest.raises(UserError, match="longer than the model's context of 2048"):
        judge.judge([("long " * 3000, "a", "b")])


class StubAPI:
    """An OpenAI-compatible chat-completions server on 127.0.0.1 that prefers the response
    holding GOOD, else answers `fallback`; it records every request."""

    def __init__(self, fallback="1"):
        self.requests = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append({"path": self.path, "auth": self.headers.get(
                    "Authorization"), "body": body})
                prompt = body["messages"][0]["content"]
                first = prompt.split("Response 1:\n")[1].split("\n\nResponse 2:")[0]
                second = prompt.split("Response 2:\n")[1]
                answer = "1" if "GOOD" in first else "2" if "GOOD" in second else fallback
                data = json.dumps({"choices": [{"message": {"role": "assistant",
                                                            "content": answer}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_http_judge_against_a_stub_server(tmp_path, monkeypatch):
    monkeypatch.setenv("PLE_JUDGE_API_KEY", "sk-test")
    a = write_samples(tmp_path / "a.jsonl", [("q1", "GOOD one"), ("q2", "meh"), ("q3", "x")])
    b = write_samples(tmp_path / "b.jsonl", [("q1", "meh"), ("q2", "GOOD two"), ("q3", "y")])
    out = tmp_path / "w.json"
    with StubAPI() as api:
        result = run_ple("winrate", a, b, "--judge", "http", "--base-url", api.url + "/",
                         "--judge-model", "judge-4", "--output", out)
    assert result.returncode == 0, result.stderr
    assert len(api.requests) == 6
    for r in api.requests:
        assert r["path"] == "/v1/chat/completions" and r["auth"] == "Bearer sk-test"
        assert r["body"]["model"] == "judge-4" and r["body"]["temperature"] == 0
    prompts = [r["body"]["messages"][0]["content"] for r in api.requests]
    assert judge_prompt("q1", "GOOD one", "meh") in prompts
    assert judge_prompt("q1", "meh", "GOOD one") in prompts
    report = json.loads(out.read_text())
    # q3: the stub always answers "1" without GOOD, a position bias: a tie.
    assert [r["outcome"] for r in report["pairs"]] == ["win", "lose", "tie"]
    assert report["pairs"][0]["orders"][1] == {"shown": "BA", "preferred": "A", "answer": "2"}
    assert (report["win"], report["tie"], report["lose"]) == (1, 1, 1)


def test_a_judge_answering_neither_label_exits_2_with_one_line(tmp_path):
    a = write_samples(tmp_path / "a.jsonl", [("q1", "one")])
    b = write_samples(tmp_path / "b.jsonl", [("q1", "two")])
    out = tmp_path / "w.json"
    with StubAPI(fallback="Both are fine.") as api:
        result = run_ple("winrate", a, b, "--judge", "http", "--base-url", api.url,
                         "--judge-model", "judge-4", "--output", out)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "ple: error: judge judge-4 answered 'Both are fine.', neither 1 nor 2, for query 'q1'"]
    assert not out.exists()


def test_http_errors_are_one_line(tmp_path, monkeypatch):
    import socket

    monkeypatch.delenv("PLE_JUDGE_API_KEY", raising=False)

    class Refuse(BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_error(401, "Unauthorized")

        def log_message(self, *args):
            pass

    a = write_samples(tmp_path / "a.jsonl", [("q1", "one")])
    b = write_samples(tmp_path / "b.jsonl", [("q1", "two")])
    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = run_ple("winrate", a, b, "--judge", "http", "--judge-model", "m", "--base-url",
                         f"http://127.0.0.1:{server.server_address[1]}", "--output",
                         tmp_path / "w.json")
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"ple: error: judge API http://127.0.0.1:{server.server_address[1]}/chat/completions: "
        f"HTTP 401 Unauthorized (is PLE_JUDGE_API_KEY set to a valid key?)"]
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_ple("winrate", a, b, "--judge", "http", "--judge-model", "m", "--base-url",
                     f"http://127.0.0.1:{port}", "--output", tmp_path / "w.json")
    assert result.returncode == 2 and "cannot connect" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "w.json").exists()


def test_queries_in_one_file_only_are_counted(tmp_path):
    a = write_samples(tmp_path / "a.jsonl", [("q1", "x"), ("q2", "good"), ("q3", "bad")])
    b = write_samples(tmp_path / "b.jsonl", [("q2", "bad"), ("q3", "good"), ("q4", "x"),
                                             ("q5", "x")])
    out = tmp_path / "w.json"
    result = run_ple("winrate", a, b, "--judge", "reward", "--reward", "vader", "--output", out)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["n"] == 2 and [r["query"] for r in report["pairs"]] == ["q2", "q3"]
    assert (report["model_a"]["unmatched"], report["model_b"]["unmatched"]) == (1, 2)
    assert "not judged (query in one file only): 1 of 3 in A, 2 of 4 in B" in result.stdout


@pytest.mark.parametrize("args,message", [
    (["--judge", "reward"], "--judge reward needs --reward"),
    (["--judge", "llm"], "--judge llm needs --judge-model"),
    (["--judge", "http", "--judge-model", "m"], "--judge http needs --base-url"),
    (["--judge", "http", "--judge-model", "m", "--base-url", "127.0.0.1:8000"],
     "--base-url 127.0.0.1:8000: must start with http:// or https://"),
    (["--judge", "reward", "--reward", "vader", "--output", "no/such/dir/w.json"],
     "--output no/such/dir/w.json: the directory no/such/dir does not exist"),
    (["--judge", "reward", "--reward", "vader", "--output", "."],
     "--output . is a directory; give a file name"),
    (["--judge", "http", "--judge-model", "m", "--base-url", "http://x", "--timeout", "0"],
     "--timeout 0: must be positive"),
])
def test_bad_flags_exit_2_with_one_line(tmp_path, args, message):
    a = write_samples(tmp_path / "a.jsonl", [("q1", "one")])
    b = write_samples(tmp_path / "b.jsonl", [("q1", "two")])
    if "--output" not in args:
        args = [*args, "--output", "w.json"]
    result = run_ple("winrate", a, b, *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"ple: error: {message}"]
    assert not (tmp_path / "w.json").exists()


def test_bad_sample_files_exit_2_with_one_line(tmp_path):
    a = write_samples(tmp_path / "a.jsonl", [("q1", "one")])
    b = write_samples(tmp_path / "b.jsonl", [("q2", "two")])
    result = run_ple("winrate", a, b, "--judge", "reward", "--reward", "vader", "--output",
                     tmp_path / "w.json")
    assert result.returncode == 2 and "have no query in common (1 and 1 queries)" in \
        result.stderr
    (tmp_path / "empty").mkdir()
    result = run_ple("winrate", a, tmp_path / "empty", "--judge", "reward", "--reward",
                     "vader", "--output", tmp_path / "w.json")
    assert result.stderr.strip().splitlines() == [
        f"ple: error: {tmp_path / 'empty'}: a directory without eval_samples.jsonl "
        f"(`ple eval` writes it)"]
    assert not (tmp_path / "w.json").exists()


@pytest.mark.parametrize("answer,position", [
    ("1", 0), (" 2\n", 1), ("**1**", 0), ("2.", 1), ("'1'", 0),
    ("Response 1", None), ("12", None), ("", None), ("1 or 2", None)])
def test_parse_label(answer, position):
    assert parse_label(answer) == position
