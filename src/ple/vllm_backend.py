"""Sampling with vLLM on a CUDA GPU (config `generation_backend: vllm`).

vLLM holds the frozen base model. Before each generate call the trainer's current LoRA
adapter is saved to a temporary directory and named in a LoRARequest with a fresh id, so
vLLM loads the new weights instead of serving its cached copy of the last step's. Sampling
parameters are the transformers path's, and responses are cut after their first stop token
the same way (ple.rollout.cut_at_stop).

Not covered by the test suite: vLLM needs a CUDA GPU and is not a dependency of ple. What is
tested is the config check that refuses `vllm` where it is not installed.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ple.config import PLEConfig
from ple.models import default_model_dir
from ple.rollout import cut_at_stop, stop_ids

# vLLM reserves this share of GPU memory up front for its KV cache; training needs the rest.
GPU_MEMORY_SHARE = 0.3


class VLLMSampler:
    """One response per prompt from vLLM, under the adapter the policy has now."""

    def __init__(self, args: PLEConfig, model, tokenizer):
        from vllm import LLM, SamplingParams

        self.stops = stop_ids(model, tokenizer)
        base = str(default_model_dir()) if args.model == "default" else args.model
        self.llm = LLM(model=base, enable_lora=True, max_lora_rank=args.lora_r,
                       seed=args.seed, gpu_memory_utilization=GPU_MEMORY_SHARE)
        # vLLM's "no top-k" is -1 where ple's (and transformers') is 0.
        self.params = SamplingParams(max_tokens=args.max_new_tokens,
                                     temperature=args.temperature, top_p=args.top_p,
                                     top_k=args.top_k or -1,
                                     stop_token_ids=sorted(self.stops))
        self._dir = tempfile.TemporaryDirectory(prefix="ple-vllm-")
        self._version = 0

    def sample(self, peft_model, prompts: list[list[int]]) -> list[list[int]]:
        from vllm.inputs import TokensPrompt
        from vllm.lora.request import LoRARequest

        self._version += 1
        path = Path(self._dir.name) / f"adapter-{self._version}"
        peft_model.save_pretrained(path, safe_serialization=True)
        request = LoRARequest(f"ple-{self._version}", self._version, str(path))
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts],
                                    self.params, lora_request=request, use_tqdm=False)
        shutil.rmtree(path)  # loaded by now; one adapter on disk at a time
        return cut_at_stop([list(o.outputs[0].token_ids) for o in outputs], self.stops)
