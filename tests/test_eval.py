"""`ple eval` on the tiny model: each number against an independent computation, the
written samples, reproducibility, and bad input."""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import run_ple

POSITIVE = [
    "A warm and funny film with a cast that clearly enjoyed every minute of making it.",
    "I loved this movie from the first scene to the last, and the music is wonderful too.",
    "One of the best films of the year: smart, moving, beautifully shot and very well acted.",
    "The story is simple but the performances are so good that it never feels thin at all.",
    "What a delight this was, a small film with a big heart and a lovely final act indeed.",
    "Great fun for the whole family, with jokes for the adults and real charm for kids.",
]
NEGATIVE = ["A dull, lifeless film that wastes a fine cast on a script with nothing to say.",
            "I wanted to like it, but the plot makes no sense and the ending is a cheat."]


def write_jsonl(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


@pytest.fixture(scope="module")
def adapter_run(tmp_path_factory):
    """A run directory as `ple train` leaves it (config.yaml naming the model, adapter/),
    whose LoRA weights are random and large, so the adapter changes every number."""
    from peft import get_peft_model

    from ple.models import load_policy, paper_lora

    out = tmp_path_factory.mktemp("eval") / "run"
    model = get_peft_model(load_policy("tiny", seed=0)[0], paper_lora())
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    model.save_pretrained(out / "adapter", safe_serialization=True)
    (out / "config.yaml").write_text("task: imdb\nmodel: tiny\n")
    return out


@pytest.fixture(scope="module")
def imdb_test(tmp_path_factory):
    """6 positive reviews (test examples), 2 negative and 1 short one (not test examples)."""
    records = [{"text": t, "label": 1} for t in POSITIVE]
    records += [{"text": t, "label": 0} for t in NEGATIVE]
    records.append({"text": "Loved it, simply loved it.", "label": 1})
    return write_jsonl(tmp_path_factory.mktemp("data") / "test.jsonl", records)


def run_eval(out, *args, printed: list | None = None):
    """`ple eval` on the tiny model: (eval.json, eval_samples.jsonl rows); what it printed is
    appended to `printed` when given."""
    result = run_ple("eval", "--model", "tiny", "--max-new-tokens", "6", "--output-dir", out,
                     *args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"Wrote {out}/eval.json and eval_samples.jsonl" in result.stdout
    if printed is not None:
        printed.append(result.stdout)
    return (json.loads((Path(out) / "eval.json").read_text()),
            [json.loads(line) for line in open(Path(out) / "eval_samples.jsonl")])


def tiny_policy(adapter=None):
    from peft import PeftModel

    from ple.models import load_policy

    model, tokenizer = load_policy("tiny", seed=0)
    if adapter:
        model = PeftModel.from_pretrained(model, adapter)
    return model.eval(), tokenizer


def prompter(tokenizer, task="imdb", chat=True):
    from ple.rollout import Prompter
    from ple.tasks import TASKS

    return Prompter(tokenizer, TASKS[task], TASKS[task].principle, chat)


def nll_sum(model, prompt: list[int], target: list[int]) -> float:
    """-log p(target | prompt): one unpadded forward pass and cross-entropy."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt + target])).logits[0]
    return float(F.cross_entropy(logits[len(prompt) - 1:-1], torch.tensor(target),
                                 reduction="sum"))


@pytest.mark.slow
@pytest.mark.parametrize("chat", [True, False])
def test_reference_perplexity_is_exp_mean_nll(adapter_run, imdb_test, tmp_path, chat):
    # Batches of 3 mix lengths (left padding); 11 tokens cut about half the references.
    result, rows = run_eval(tmp_path / "e", "--adapter", adapter_run / "adapter",
                            "--test-data", imdb_test, "-n", "5", "--batch-size", "3",
                            "--max-reference-tokens", "11", "--chat-template", str(chat).lower())
    model, tokenizer = tiny_policy(adapter_run / "adapter")
    p = prompter(tokenizer, chat=chat)
    nll = base_nll = 0.0
    tokens = cut = 0
    for row in rows:
        target = tokenizer(row["reference"], add_special_tokens=False)["input_ids"] + \
            [tokenizer.eos_token_id]
        if len(target) > 11:
            target, cut = target[:11], cut + 1
        nll += nll_sum(model, p.ids(row["query"]), target)
        with model.disable_adapter():
            base_nll += nll_sum(model, p.ids(row["query"]), target)
        tokens += len(target)
    assert result["reference_perplexity"] == pytest.approx(math.exp(nll / tokens), rel=1e-4)
    assert (result["reference_tokens"], result["references_truncated"]) == (tokens, cut)
    assert 0 < cut < len(rows)
    # Measured with the adapter on: the base model's number is another.
    assert result["reference_perplexity"] != pytest.approx(math.exp(base_nll / tokens),
                                                           rel=1e-3)


@pytest.fixture
def generated(monkeypatch) -> list:
    """The token ids of every response held-out evaluation samples, in sampling order."""
    from ple.evaluation import heldout

    recorded = []
    real_sample = heldout.sample

    def recording_sample(*args, **kwargs):
        recorded.extend(responses := real_sample(*args, **kwargs))
        return responses

    monkeypatch.setattr(heldout, "sample", recording_sample)
    return recorded


@pytest.mark.slow
def test_guards_base_model_perplexity_and_distinct(adapter_run, imdb_test, tmp_path,
                                                   generated):
    from ple.evaluation.metrics import assistant_speak_share, distinct_n

    result, rows = run_eval(tmp_path / "e", "--adapter", adapter_run / "adapter",
                            "--test-data", imdb_test, "--batch-size", "4")
    base, tokenizer = tiny_policy()
    p = prompter(tokenizer)
    # Responses are generated in batches of prompts sorted by length (stable), then unsorted.
    by_length = sorted(rows, key=lambda row: len(p.ids(row["query"])))
    nll = sum(nll_sum(base, p.ids(row["query"]), ids) for row, ids in zip(by_length, generated))
    tokens = sum(len(ids) for ids in generated)
    assert result["base_perplexity"] == pytest.approx(math.exp(nll / tokens), rel=1e-4)
    texts = [row["response"] for row in rows]
    assert result["distinct_1"] == distinct_n(texts, 1)
    assert result["distinct_2"] == distinct_n(texts, 2)
    assert result["assistant_speak"] == assistant_speak_share(texts)


def response_logprobs(model, prompt: list[int], response: list[int]) -> list[float]:
    """log p(y_t | x, y_<t) of each response token: one unpadded forward pass, log_softmax."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt + response])).logits[0]
    logps = F.log_softmax(logits[len(prompt) - 1:-1].double(), dim=-1)
    return logps[torch.arange(len(response)), torch.tensor(response)].tolist()


@pytest.mark.slow
def test_kl_from_the_base_by_hand(adapter_run, imdb_test, tmp_path, generated):
    """`ple eval --adapter`: each response's KL is the sum over its tokens of log pi - log
    pi_base, each log-prob from its own unpadded forward pass (adapter on, then off), and
    eval.json holds their mean and standard error. Batches of 4 mix prompt lengths, so left
    padding and position ids are exercised."""
    printed = []
    result, rows = run_eval(tmp_path / "e", "--adapter", adapter_run / "adapter",
                            "--test-data", imdb_test, "--batch-size", "4", printed=printed)
    model, tokenizer = tiny_policy(adapter_run / "adapter")
    p = prompter(tokenizer)
    by_length = sorted(rows, key=lambda row: len(p.ids(row["query"])))
    assert len(by_length) == len(generated) == 6
    assert len({len(p.ids(row["query"])) for row in rows}) > 1  # left padding in a batch
    for row, ids in zip(by_length, generated):
        prompt = p.ids(row["query"])
        policy = response_logprobs(model, prompt, ids)
        with model.disable_adapter():
            base = response_logprobs(model, prompt, ids)
        by_hand = sum(a - b for a, b in zip(policy, base))
        assert row["kl"] == pytest.approx(by_hand, abs=1e-4)
    kls = [row["kl"] for row in rows]
    mean = sum(kls) / 6
    se = math.sqrt(sum((k - mean) ** 2 for k in kls) / 5 / 6)
    assert (result["kl_mean"], result["kl_se"]) == (pytest.approx(mean), pytest.approx(se))
    assert all(abs(k) > 1e-3 for k in kls), kls  # the adapter's random weights moved it
    assert f"KL from the base model {result['kl_mean']:.3f} ± {se:.3f}" in printed[0]


@pytest.mark.slow
def test_a_policy_equal_to_its_base_has_kl_exactly_0(imdb_test, tmp_path):
    """A fresh LoRA adapter (B = 0), measured against the same model with the adapter
    disabled (`ple eval --adapter`, and the held-out evaluation of a LoRA run before its
    first step); a full fine-tuning policy against its frozen copy before any update; an
    untrained model as its own base. Then a change of the weights shows."""
    import copy

    from peft import get_peft_model

    from ple.evaluation.heldout import evaluate_plain
    from ple.evaluation.evaluate import EvalConfig
    from ple.models import load_policy, paper_lora
    from ple.rewards.vader import VaderReward

    fresh = get_peft_model(load_policy("tiny", seed=0)[0], paper_lora())
    fresh.save_pretrained(tmp_path / "fresh", safe_serialization=True)
    result, rows = run_eval(tmp_path / "e", "--adapter", tmp_path / "fresh", "--test-data",
                            imdb_test, "--batch-size", "4")
    assert [row["kl"] for row in rows] == [0.0] * 6
    assert (result["kl_mean"], result["kl_se"]) == (0.0, 0.0)

    model, tokenizer = load_policy("tiny", seed=0)
    args = EvalConfig(max_new_tokens=6)
    queries = [" ".join(t.split()[:8]) for t in POSITIVE]
    def kls(policy, frozen_base):
        plain = evaluate_plain(policy, tokenizer, prompter(tokenizer), VaderReward(), queries,
                               args, frozen_base, batch_size=4)
        return [s["kl"] for s in plain["samples"]], plain["kl_mean"]

    fresh.eval()
    assert kls(fresh, None) == ([0.0] * 6, 0.0)
    frozen = copy.deepcopy(model).eval()
    assert kls(model, frozen) == ([0.0] * 6, 0.0)
    assert kls(model, model) == ([0.0] * 6, 0.0)
    with torch.no_grad():
        model.lm_head.weight.add_(0.05 * torch.randn_like(model.lm_head.weight))
    moved, mean = kls(model, frozen)
    assert all(k != 0.0 for k in moved) and mean != 0.0


def test_assistant_speak_by_hand():
    from ple.evaluation.metrics import assistant_speak_share, is_assistant_speak

    speaks = ["I'm so glad you enjoyed the film!", "I am thrilled to share this.",
              "Thanks for your feedback.", "Let me assist you with that.",
              "As an AI, I loved it."]
    reviews = ["The film is a delight from start to end.", "I'm sure the cast had fun.",
               "Glad I saw it; I am not happy with the ending.", "A fair movie, said Al.",
               "The paint job was hideous."]  # "paint" holds "ai", but not the word AI
    assert all(map(is_assistant_speak, speaks))
    assert not any(map(is_assistant_speak, reviews))
    assert assistant_speak_share(speaks + reviews) == 0.5
    assert assistant_speak_share([]) == 0.0


@pytest.mark.slow
def test_bleu_is_sacrebleu_corpus_bleu(tmp_path):
    import sacrebleu

    posts = [f"SUBREDDIT: r/test\n\nTITLE: Question {i}\n\nPOST: {text}\n\nTL;DR:"
             for i, text in enumerate(POSITIVE[:4])]
    first = write_jsonl(tmp_path / "a.jsonl", [{"prompt": p, "summary": " a summary"}
                                               for p in posts])
    _, rows = run_eval(tmp_path / "a", "--task", "tldr", "--reward", "vader",
                       "--test-data", first)
    # References that share words with the responses, so BLEU is far from 0. (Sampled, not
    # greedy: the random model's greedy choice can be an empty response, and the seed
    # makes the second run sample the same responses anyway.)
    references = [rows[0]["response"], rows[1]["response"], " a summary", " another one"]
    second = write_jsonl(tmp_path / "b.jsonl", [{"prompt": p, "summary": r}
                                                for p, r in zip(posts, references)])
    result, rows_b = run_eval(tmp_path / "b", "--task", "tldr", "--reward", "vader",
                              "--test-data", second)
    responses = [row["response"] for row in rows_b]
    assert responses == [row["response"] for row in rows]
    direct = sacrebleu.corpus_bleu(responses, [[row["reference"] for row in rows_b]])
    assert result["bleu"] == pytest.approx(direct.score)
    assert 10 < result["bleu"] < 100
    assert result["bleu_signature"] == \
        f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{sacrebleu.__version__}"
    assert result["bleu_references_cut"] is False  # a TL;DR summary is a whole reference


@pytest.mark.slow
def test_imdb_bleu_cuts_each_reference_to_its_response_length(imdb_test, tmp_path):
    import sacrebleu

    _, rows = run_eval(tmp_path / "a", "--test-data", imdb_test, "-n", "4")
    # Reviews that go on with exactly the responses, then far beyond them. The seed makes the
    # second run sample the same responses to the same openings.
    tail = " and then the review goes on for many more words than any response has"
    reviews = write_jsonl(tmp_path / "b.jsonl", [
        {"text": row["query"] + " " + row["response"] + tail, "label": 1} for row in rows])
    printed = []
    result, rows_b = run_eval(tmp_path / "b", "--test-data", reviews, "-n", "4",
                              printed=printed)
    assert "  BLEU 100.00 (nrefs:1|" in printed[0]
    assert "references cut to each response's length)" in printed[0]
    responses = [row["response"] for row in rows_b]
    assert responses == [row["response"] for row in rows]
    assert result["bleu_references_cut"] is True
    assert result["bleu"] == pytest.approx(100)
    # Uncut, the brevity penalty alone would sink it, for every model alike.
    uncut = sacrebleu.corpus_bleu(responses, [[row["reference"] for row in rows_b]]).score
    assert uncut < 10


@pytest.mark.slow
def test_samples_rows_complete_and_counts(imdb_test, tmp_path):
    from ple.rewards.vader import VaderReward

    result, rows = run_eval(tmp_path / "e", "--test-data", imdb_test, "-n", "4")
    assert result["n"] == len(rows) == 4
    assert (result["test_examples"], result["records_without_reference"],
            result["queries_dropped_too_long"]) == (6, 3, 0)
    queries = {" ".join(t.split()[:8]): " " + " ".join(t.split()[8:]) for t in POSITIVE}
    for row in rows:
        assert set(row) == {"query", "response", "reference", "reward", "kl"}
        assert row["kl"] == 0.0  # no adapter: the model is its own base
        assert row["reference"] == queries[row["query"]]
        assert row["reward"] == VaderReward().score([row["query"]], [row["response"]])[0]
    rewards = [row["reward"] for row in rows]
    mean = sum(rewards) / 4
    se = math.sqrt(sum((r - mean) ** 2 for r in rewards) / 3 / 4)
    assert (result["reward_mean"], result["reward_se"]) == (pytest.approx(mean),
                                                            pytest.approx(se))
    assert result["reward"] == "vader"
    assert (result["kl_mean"], result["kl_se"]) == (0.0, 0.0)


@pytest.mark.slow
def test_extra_rewards_score_the_same_responses(imdb_test, tmp_path):
    """A second scorer beside the reward: its score of each response, and mean ± SE."""
    from ple.rewards.vader import VaderReward

    module = tmp_path / "length_scorer.py"
    module.write_text("def score(prompts, completions):\n"
                      "    return [len(c) / 10 for c in completions]\n")
    result = run_ple("eval", "--model", "tiny", "--max-new-tokens", "6", "--output-dir",
                     tmp_path / "e", "--test-data", imdb_test, "-n", "4", "--reward",
                     "length_scorer:score", "--extra-rewards", "vader", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "(vader, not trained on)" in result.stdout
    evaluation = json.loads((tmp_path / "e" / "eval.json").read_text())
    rows = [json.loads(line) for line in open(tmp_path / "e" / "eval_samples.jsonl")]
    vader = [VaderReward().score([r["query"]], [r["response"]])[0] for r in rows]
    assert [r["extra_rewards"]["vader"] for r in rows] == vader
    assert [r["reward"] for r in rows] == [len(r["response"]) / 10 for r in rows]
    mean = sum(vader) / 4
    se = math.sqrt(sum((v - mean) ** 2 for v in vader) / 3 / 4)
    assert evaluation["extra_rewards"] == {"vader": {"mean": pytest.approx(mean),
                                                     "se": pytest.approx(se)}}


def test_long_queries_are_dropped_and_counted(imdb_test, tmp_path):
    from ple.models import load_tokenizer

    raw = prompter(load_tokenizer("tiny"), chat=False)
    lengths = [len(raw.ids(" ".join(t.split()[:8]))) for t in POSITIVE]
    limit = min(lengths)
    result, rows = run_eval(tmp_path / "e", "--test-data", imdb_test, "--chat-template",
                            "false", "--max-prompt-tokens", str(limit))
    assert result["queries_dropped_too_long"] == sum(n > limit for n in lengths) > 0
    assert result["n"] == len(rows) == sum(n == limit for n in lengths)


@pytest.mark.slow
def test_builtin_heldout_queries_have_no_references(tmp_path):
    result, rows = run_eval(tmp_path / "e", "-n", "3")
    assert result["test_data"] == "(built-in imdb held-out queries)"
    assert result["reference_perplexity"] is None and result["bleu"] is None
    assert len(rows) == 3 and all(row["reference"] is None for row in rows)


@pytest.mark.slow
def test_greedy_and_seeded_sampling_are_reproducible(imdb_test, tmp_path):
    runs = {}
    for name, flags in [("g1", ["--greedy"]), ("g2", ["--greedy"]), ("s1", []), ("s2", [])]:
        runs[name] = run_eval(tmp_path / name, "--test-data", imdb_test, "--batch-size", "1",
                              *flags)
    for a, b in [("g1", "g2"), ("s1", "s2")]:
        assert runs[a][1] == runs[b][1]
        strip = {k: v for k, v in runs[a][0].items() if k != "config"}
        assert strip == {k: v for k, v in runs[b][0].items() if k != "config"}
    assert runs["g1"][1] != runs["s1"][1]
    # Greedy is greedy: transformers' own greedy search gives the same response.
    model, tokenizer = tiny_policy()
    row = runs["g1"][1][0]
    ids = torch.tensor([prompter(tokenizer).ids(row["query"])])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                         max_new_tokens=6, pad_token_id=tokenizer.pad_token_id)
    assert tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True) == row["response"]


# --- bad input: one line, exit 2, nothing written ------------------------------------------

def assert_refused(result, message, out):
    assert result.returncode == 2, result.stderr[-1500:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ple: error: ") and message in lines[0], lines
    assert not (Path(out) / "eval.json").exists()


def test_directory_that_is_not_an_adapter(tmp_path):
    out = tmp_path / "e"
    result = run_ple("eval", "--model", "tiny", "--adapter", tmp_path, "--output-dir", out)
    assert_refused(result, f"--adapter {tmp_path}: not a PEFT adapter directory "
                   f"(no adapter_config.json)", out)


def other_tokenizer(path: Path) -> Path:
    from ple.models import load_tokenizer

    tokenizer = load_tokenizer("tiny")
    tokenizer.add_tokens(["<not-in-the-base-vocabulary>"])
    tokenizer.save_pretrained(path)
    return path


def test_adapter_with_a_tokenizer_of_another_vocabulary(adapter_run, tmp_path):
    adapter = shutil.copytree(adapter_run / "adapter", tmp_path / "adapter")
    other_tokenizer(adapter)
    out = tmp_path / "e"
    result = run_ple("eval", "--model", "tiny", "--adapter", adapter, "--output-dir", out)
    assert_refused(result, f"--adapter {adapter}: its tokenizer (the tokenizer in {adapter}, "
                   f"49153 tokens) differs from model tiny's (49152 tokens; 1 token-id "
                   f"entries differ)", out)


def test_run_trained_on_a_model_with_another_vocabulary(adapter_run, tmp_path):
    adapter = shutil.copytree(adapter_run / "adapter", tmp_path / "run" / "adapter")
    other = other_tokenizer(tmp_path / "other-model")
    config = (adapter_run / "config.yaml").read_text().replace("model: tiny",
                                                               f"model: {other}")
    (tmp_path / "run" / "config.yaml").write_text(config)
    out = tmp_path / "e"
    result = run_ple("eval", "--model", "tiny", "--adapter", adapter, "--output-dir", out)
    assert_refused(result, f"its tokenizer (model {other} of {tmp_path / 'run' / 'config.yaml'}"
                   f", 49153 tokens) differs from model tiny's", out)


def test_adapter_checked_against_its_runs_model(adapter_run, imdb_test, tmp_path):
    result, _ = run_eval(tmp_path / "e", "--adapter", adapter_run / "adapter", "-n", "1")
    assert result["adapter_tokenizer"] == f"same model as {adapter_run / 'config.yaml'}"


def test_empty_test_split(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    out = tmp_path / "e"
    result = run_ple("eval", "--model", "tiny", "--test-data", empty, "--output-dir", out)
    assert_refused(result, f"--test-data {empty}: no records (an empty test split)", out)


def test_test_split_without_a_test_example(tmp_path):
    negatives = write_jsonl(tmp_path / "neg.jsonl", [{"text": t, "label": 0} for t in NEGATIVE])
    out = tmp_path / "e"
    result = run_ple("eval", "--model", "tiny", "--test-data", negatives, "--output-dir", out)
    assert_refused(result, f"--test-data {negatives}: none of its 2 records is a test example "
                   f"for task imdb", out)


def test_out_of_range_flag(tmp_path):
    out = tmp_path / "e"
    result = run_ple("eval", "--model", "tiny", "-n", "0", "--output-dir", out)
    assert_refused(result, "-n 0: must be >= 1", out)


@pytest.mark.slow
def test_earlier_evaluation_is_kept_unless_overwrite(tmp_path):
    out = tmp_path / "e"
    first, _ = run_eval(out, "-n", "1")
    result = run_ple("eval", "--model", "tiny", "-n", "2", "--output-dir", out)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"ple: error: --output-dir {out} holds an earlier "
                                     f"evaluation (eval.json); pass --overwrite to replace "
                                     f"it or choose another directory")
    assert json.loads((out / "eval.json").read_text()) == first
    second, rows = run_eval(out, "-n", "2", "--overwrite")
    assert second["n"] == len(rows) == 2


def test_paired_difference_and_95_percent_intervals():
    from ple.evaluation.metrics import ci95, paired_difference

    mean, se, n = paired_difference({"a": 1.0, "b": 3.0, "c": 0.0}, {"a": 0.0, "b": 1.0})
    assert (mean, n) == (1.5, 2) and se == pytest.approx(0.5)
    assert ci95([(0.4, 0.1)]) == (0.4, pytest.approx(0.196))
    mean, half = ci95([(1.0, 9.0), (2.0, 9.0), (3.0, 9.0)])  # the seeds' spread, not their SE
    assert mean == 2.0 and half == pytest.approx(4.303 * 1.0 / 3 ** 0.5)


def test_scoring_in_row_chunks_gives_what_scoring_at_once_gives(monkeypatch):
    """The held-out log-probs are formed SCORE_ROWS sequences at a time, apart from the
    generation batches: how many rows are scored together changes no number."""
    import copy

    from ple.evaluation import heldout
    from ple.evaluation.evaluate import EvalConfig
    from ple.models import load_policy
    from ple.rewards.vader import VaderReward

    model, tokenizer = load_policy("tiny", seed=0)
    frozen = copy.deepcopy(model).eval()
    with torch.no_grad():
        model.lm_head.weight.add_(0.05 * torch.randn_like(model.lm_head.weight))
    queries = [" ".join(t.split()[:4 + i % 5]) for i, t in enumerate(POSITIVE * 2)]

    def evaluated(rows: int) -> dict:
        monkeypatch.setattr(heldout, "SCORE_ROWS", rows)
        return heldout.evaluate_plain(model, tokenizer, prompter(tokenizer), VaderReward(),
                                      queries, EvalConfig(max_new_tokens=6), frozen,
                                      batch_size=5)

    apart, together = evaluated(2), evaluated(64)
    assert [s["response"] for s in apart["samples"]] == \
        [s["response"] for s in together["samples"]]
    assert [s["kl"] for s in apart["samples"]] == \
        pytest.approx([s["kl"] for s in together["samples"]], abs=1e-4)
    assert apart["base_perplexity"] == pytest.approx(together["base_perplexity"], rel=1e-5)
