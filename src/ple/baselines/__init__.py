"""The paper's baselines, each in the same harness as PLE (ple.online.OnlineTrainer)."""
