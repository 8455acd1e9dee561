"""push_to_hub as transformers.Trainer has it: after training, the trained model (as
save_model writes it) and the run's record go to the Hub repository hub_model_id."""

from __future__ import annotations

import shutil
from pathlib import Path

from ple.errors import UserError

# The run's record that travels with the model; samples.jsonl stays local (it grows with
# every generated pair), as do the checkpoints.
RECORD = ("config.yaml", "metrics.jsonl", "summary.json", "reward_curves.png",
          "loss_curve.png", "purity.png")


def repo_id(args) -> str:
    """hub_model_id, else the output directory's name (transformers.Trainer's default)."""
    return args.hub_model_id or Path(args.output_dir).resolve().name


def push_run(folder: Path, out: Path, args, commit_message: str) -> str:
    """Upload `folder` (a saved model) with the run's record from `out` to repo_id(args),
    creating the repository if need be; returns the commit's URL."""
    import huggingface_hub

    for name in RECORD:
        if (out / name).is_file():
            shutil.copy2(out / name, folder / name)
    target = repo_id(args)
    try:
        repo = huggingface_hub.create_repo(target, private=args.hub_private_repo,
                                           exist_ok=True)
        commit = huggingface_hub.upload_folder(repo_id=repo.repo_id, folder_path=folder,
                                               commit_message=commit_message)
    except Exception as e:  # noqa: BLE001 - HTTP, connection, auth, offline mode: all one line
        first = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        raise UserError(f"push_to_hub: uploading to {target} failed, the run itself is "
                        f"complete in {out} ({first[:200]})") from None
    return str(getattr(commit, "commit_url", commit))
