"""Reward models that ple trains for you, once, and reuses: `--reward imdb-sentiment`.

The paper's rewards are trained models (a sentiment classifier for IMDb, preference models
for HH and TL;DR); none ships on PyPI. A *recipe* names the data, the settings of
`ple reward train` and the base model. The first run that asks for it trains it and caches
it in `$PLE_CACHE_DIR/rewards/NAME-KEY/` (default `~/.cache/ple`), KEY a hash of the recipe's
settings, the data's contents and RECIPE_VERSION; every later run, study and test that asks
for the same recipe loads that directory. Changing the data or a setting gives another key
and so another model: a cached model never silently stands for different training. The code
is not hashed, so that a refactor keeps the cached models; a change that makes the training
compute something else bumps RECIPE_VERSION by hand.

The data is read from `$PLE_DATA_DIR`; without it, from the `shared/data` folder beside a
source checkout of ple, which holds the IMDb and HH-RLHF slices, or else from
`~/.cache/ple/data`, where `ple data prepare` builds the same files from the public datasets.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ple.errors import UserError
from ple.rewards.training.config import RewardTrainConfig

log = logging.getLogger(__name__)

# Part of every built-in reward's cache key. Bump it by hand when the trained model must
# change although no recipe setting and no data file did: the training computes something
# else (another loss, optimizer, data order, probe or text format, in ple.rewards.training,
# ple.rewards.gated, ple.rewards.texts, ple.data_files or ple.hh_format). Every built-in reward
# is then trained again on first use (an hour of CPU for imdb-sentiment), so a refactor that
# computes the same keeps it.
#   1: the key of recipe, data and version (it hashed the training code before).
#   2: the classifier fine-tuned by transformers' Trainer (another batch order).
RECIPE_VERSION = 2


@dataclass(frozen=True)
class Recipe:
    """How to train one built-in reward: `ple reward train` settings over files of the
    data folder (paths relative to it)."""

    name: str
    about: str
    minutes: str  # measured time on 2 CPU cores, told to the user before training starts
    data: tuple[str, ...]  # pooled; without eval_data each gives eval_fraction to held-out
    eval_data: str | None = None
    settings: dict = field(default_factory=dict)  # RewardTrainConfig fields
    gated: bool = False  # one probe per data file and a gate (ple.rewards.gated), no fine-tuning


HH = ("hh-rlhf/harmless-base/test.jsonl.gz", "hh-rlhf/helpful-base/test.jsonl.gz")

RECIPES = {r.name: r for r in [
    # The paper's IMDb reward: a sentiment classifier, reward = positive-class logit.
    # Settings measured in docs/reward-models.md (0.854 held-out accuracy).
    Recipe("imdb-sentiment",
           about="IMDb sentiment classifier (positive-class logit) on the default model",
           minutes="about 30", data=("imdb/train.jsonl",), eval_data="imdb/test.jsonl",
           settings={"kind": "classifier", "base": "default", "max_train_examples": 1600,
                     "probe_examples": 1600, "max_steps": 80, "max_eval_examples": 1000,
                     "max_length": 256, "batch_size": 8}),
    # HH's harmlessness needs harmless pairs: a model of helpful pairs alone rewards
    # compliance with harmful requests. The two subsets prefer opposite things, so one probe
    # on both is at chance on harmless pairs: each file gets its own, and a gate reads the
    # request (ple.rewards.gated). The shared slice has test splits only, so 20 % of each
    # file is held out (seed 0) and reported on separately.
    Recipe("hh-preference",
           about="HH-RLHF preference model (harmless-base + helpful-base, gated by the request) "
                 "on the default model",
           minutes="about 40", data=HH, gated=True,
           settings={"kind": "preference", "base": "default", "eval_fraction": 0.2,
                     "skip_invalid_pairs": True, "max_length": 128, "batch_size": 16}),
    # The same recipes on the tiny random model, for tests: seconds, not minutes.
    Recipe("tiny-imdb-sentiment", about="IMDb classifier on the tiny random model (tests)",
           minutes="under 1", data=("imdb/train.jsonl",), eval_data="imdb/test.jsonl",
           settings={"kind": "classifier", "base": "tiny", "max_train_examples": 64,
                     "probe_examples": 64, "max_steps": 4, "max_eval_examples": 32,
                     "max_length": 64, "batch_size": 8}),
    Recipe("tiny-hh-preference", about="HH preference model on the tiny random model (tests)",
           minutes="under 1", data=HH, gated=True,
           settings={"kind": "preference", "base": "tiny", "eval_fraction": 0.2,
                     "skip_invalid_pairs": True, "max_train_examples": 64,
                     "max_eval_examples": 64, "probe_examples": 64, "max_steps": 4,
                     "max_length": 64, "batch_size": 8}),
]}


# shared/data beside a source checkout (src/ple/rewards/builtin.py -> ../shared/data).
CHECKOUT_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"


def data_root() -> Path:
    configured = os.environ.get("PLE_DATA_DIR")
    if configured:
        return Path(configured)
    if CHECKOUT_DATA.is_dir():
        return CHECKOUT_DATA
    from ple.models import cache_dir

    return cache_dir() / "data"  # ple data prepare's default folder


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _data_path(recipe: Recipe, relative: str) -> Path:
    path = data_root() / relative
    if not path.is_file():
        raise UserError(f"reward `{recipe.name}` is trained on first use from {relative}, "
                        f"which is not in {data_root()}; build it with `ple data prepare`, "
                        f"set PLE_DATA_DIR to a folder holding it, or give another --reward")
    return path


def recipe_settings(recipe: Recipe) -> dict:
    """Every setting the recipe trains with, RewardTrainConfig's defaults included (so that a
    changed default changes the key), and whether it is gated; not where the data is read
    from or the model written: the data is keyed by its contents."""
    settings = asdict(RewardTrainConfig(data="", output_dir="", **recipe.settings))
    for where in ("data", "eval_data", "output_dir", "overwrite"):
        del settings[where]
    return {**settings, "gated": recipe.gated}


def cache_key(recipe: Recipe) -> str:
    """12 hex digits of a hash of the recipe's settings, its data files' contents and
    RECIPE_VERSION."""
    files = [*recipe.data] + ([recipe.eval_data] if recipe.eval_data else [])
    parts = {"version": RECIPE_VERSION, "settings": recipe_settings(recipe),
             "data": {f: _sha256(_data_path(recipe, f)) for f in files}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def model_id(name: str) -> str | None:
    """`NAME-KEY`, the cached directory of built-in reward `name` (None for another reward):
    which model a run trained and was measured with."""
    return f"{name}-{cache_key(RECIPES[name])}" if name in RECIPES else None


def recipe_config(name: str, output_dir: str) -> RewardTrainConfig:
    """The `ple reward train` config of built-in reward `name` (its data, held-out part and
    settings), writing to `output_dir`."""
    recipe = RECIPES[name]
    return RewardTrainConfig(
        data=",".join(str(_data_path(recipe, f)) for f in recipe.data), output_dir=output_dir,
        eval_data=str(_data_path(recipe, recipe.eval_data)) if recipe.eval_data else None,
        **recipe.settings)


def prepared_reward_dir(name: str) -> Path:
    """The directory of built-in reward `name`, trained now if no cached copy exists."""
    from ple.models import cache_dir
    from ple.rewards.gated import train_gated_preference
    from ple.rewards.training.command import describe
    from ple.rewards.training.run import train_reward_model

    recipe = RECIPES[name]
    target = cache_dir() / "rewards" / model_id(name)
    if target.is_dir():
        return target
    log.info("preparing reward `%s` once (%s; %s minutes on 2 CPU cores); it is cached in %s",
             name, recipe.about, recipe.minutes, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}.tmp-"))
    try:
        trainer = train_gated_preference if recipe.gated else train_reward_model
        result = trainer(recipe_config(name, str(work / "model")))
        log.info("reward `%s`: %s", name, describe(result))
        try:
            (work / "model").rename(target)
        except OSError:  # another process finished first; its model is the same recipe
            pass
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target

