"""Train a reward model from labelled or paired data: `ple reward train`.

- kind `classifier`: `{"text", "label"}` records -> a sequence classifier with two outputs,
  trained with cross-entropy by transformers' Trainer; its reward is the logit of label 1.
- kind `preference`: `{"prompt", "chosen", "rejected"}` records or HH transcripts -> a
  one-output model trained with the Bradley–Terry loss by `trl.RewardTrainer`.

The new head first starts as a linear probe on the frozen base's features, then everything
trainable (LoRA adapters and the head) is fine-tuned; a held-out part is measured and the
model saved, LoRA merged, as a directory every method takes as `--reward`.

One module per step, in the order run.py takes them:

  config.py      RewardTrainConfig: every setting, documented; command.py: its flags
  data.py        the records read, checked and split, before any model loads
  base_model.py  the base: tokenizer, texts as token ids, the model with a new head, LoRA
  probe.py       the head fitted as a linear probe (L-BFGS logistic regression)
  finetune.py    what both kinds' fine-tuning shares: steps, optimizer, Trainer arguments
  classifier.py  fine-tuning a classifier (transformers.Trainer)
  pairwise.py    fine-tuning a preference model (trl.RewardTrainer)
  metrics.py     the held-out measures
  save.py        the output directory checked first, the model written atomically last
  run.py         train_reward_model: the steps above, in order
"""
