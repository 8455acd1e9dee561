"""Measuring a policy: reward of its responses, and guards against reward hacking."""
