"""What PLE's update does to the model, not only that it runs: one update on a fixed pair
moves the log-probabilities the way Eqs. 3-5 say, and the principle prompt never reaches a
training forward pass (it guides sampling only)."""

import math

import pytest
import torch

from conftest import one_update, prompts
from ple.buffer import ScoredPair
from ple.config import PLEConfig
from ple.models import paper_lora
from ple.rewards.vader import VaderReward
from ple.sequences import pack, response_token_logprobs
from ple.trainer import PLETrainer

PROMPT = "The film opens with"


def trainer_for(tmp_path, **fields):
    args = PLEConfig(**{"model": "tiny", "output_dir": str(tmp_path / "run"), "max_steps": 1,
                        "batch_size": 2, "max_new_tokens": 6, "learning_rate": 1e-2, **fields})
    return PLETrainer(model="tiny", args=args, reward_funcs=VaderReward(),
                      train_dataset=prompts([PROMPT, "I expected more from"]),
                      peft_config=paper_lora())


def fixed_pair(trainer, reward: float, reward_prompt: float) -> ScoredPair:
    ids = trainer.prompter.ids(PROMPT)
    y = trainer.tokenizer(" a slow and dull story", add_special_tokens=False)["input_ids"]
    y_prompt = trainer.tokenizer(" a wonderful, moving film", add_special_tokens=False)[
        "input_ids"]
    return ScoredPair(1, PROMPT, ids, y, y_prompt, reward, reward_prompt)


def logps(trainer, pair) -> tuple[float, float]:
    """(log pi(y|x), log pi(y'|x)) summed over response tokens, both after the plain x."""
    batch = pack([pair.prompt_ids] * 2, [pair.response_ids, pair.guided_ids],
                 trainer.tokenizer.pad_token_id)
    with torch.no_grad():
        sums = response_token_logprobs(trainer.model, batch).sum(-1)
    return float(sums[0]), float(sums[1])


def test_a_rank_update_raises_the_length_normalised_margin(tmp_path):
    trainer = trainer_for(tmp_path)
    pair = fixed_pair(trainer, reward=0.0, reward_prompt=1.0)  # s' - s = 1 > tau: rank (Eq. 3)
    y, y_prompt = logps(trainer, pair)
    before = y_prompt / len(pair.guided_ids) - y / len(pair.response_ids)
    row = one_update(trainer, [pair], 0.2)
    assert (row["n_rank"], row["n_weighted"], row["n_updates"]) == (1, 0, 1)
    # The logged margin is the pair's, under the model before its update.
    assert row["margin_rank"] == pytest.approx(before, abs=1e-5)
    assert row["margin_weighted"] is None
    y, y_prompt = logps(trainer, pair)
    after = y_prompt / len(pair.guided_ids) - y / len(pair.response_ids)
    assert after > before + 1e-3


def test_a_weighted_update_raises_the_better_response(tmp_path):
    """s > s' within tau: Eq. 5 gives w = tanh((s - s')/2) > 0 for y and w' = -w for y'."""
    trainer = trainer_for(tmp_path)
    pair = fixed_pair(trainer, reward=0.6, reward_prompt=0.2)
    y_before, y_prompt_before = logps(trainer, pair)
    row = one_update(trainer, [pair], 0.2)
    assert (row["n_rank"], row["n_weighted"]) == (0, 1)
    assert row["margin_rank"] is None
    assert row["margin_weighted"] == pytest.approx(
        y_prompt_before / len(pair.guided_ids) - y_before / len(pair.response_ids), abs=1e-5)
    y_after, y_prompt_after = logps(trainer, pair)
    assert y_after > y_before + 1e-3
    assert y_prompt_after < y_prompt_before - 1e-3


@pytest.mark.parametrize("length_norm", [False, True])
def test_eq4_sums_log_probs_unless_length_normalised(tmp_path, length_norm):
    """Eq. 4 weighs summed log-probs (the paper); wsft_length_norm divides each by its
    response's length, as Eq. 3 does."""
    trainer = trainer_for(tmp_path, wsft_length_norm=length_norm)
    pair = fixed_pair(trainer, reward=0.6, reward_prompt=0.2)  # weighted branch
    y, y_prompt = logps(trainer, pair)
    if length_norm:
        y, y_prompt = y / len(pair.response_ids), y_prompt / len(pair.guided_ids)
    w, w_prompt = math.tanh(0.2), -math.tanh(0.2)
    out = trainer._pair_losses([pair], tau=0.5)
    assert float(out["loss_wsft"]) == pytest.approx(-(w * y + w_prompt * y_prompt), abs=1e-4)


def test_the_principle_never_enters_a_training_forward_pass(tmp_path):
    """Sampling sees [p, x]; every forward pass with gradients (the update) sees x alone."""
    marker = "Zebra quartz lantern principle"
    trainer = trainer_for(tmp_path, principle=marker)
    marker_ids = trainer.tokenizer(marker, add_special_tokens=False)["input_ids"]
    seen = {"train": [], "sample": []}

    def spy(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None:
            seen["train" if torch.is_grad_enabled() else "sample"].extend(ids.tolist())

    base = trainer.model.get_base_model()
    handle = base.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        trainer.train()
    finally:
        handle.remove()

    def holds_marker(row):
        n = len(marker_ids)
        return any(row[i:i + n] == marker_ids for i in range(len(row) - n + 1))

    assert seen["train"] and seen["sample"]
    assert any(holds_marker(row) for row in seen["sample"])  # the spy can see it
    assert not any(holds_marker(row) for row in seen["train"])
