"""ray.serve.llm's engine-start hook: skip its node initialization when it has nothing to fetch.

Before starting vLLM, ray.serve.llm runs a Ray task on each node of the replica's placement
group to download the model (`initialize_node`). Without a cloud mirror that task downloads
nothing (vLLM itself reads a local path or a Hugging Face id), but it still costs a fresh
Ray worker that imports torch, transformers and vLLM: about 5 s of a 2-core machine at every
replica start (`tierserve bench cold-start`). Tierserve hands the engine a local path
(`TierServer._fetch_model` fetches remote sources first), so the task is skipped then.
"""

from __future__ import annotations

import os

from ray.llm._internal.common.callbacks.base import CallbackBase
from ray.llm._internal.common.utils.cloud_utils import is_remote_path


class LocalModelInit(CallbackBase):
    """Named by import path in LLMConfig.callback_config (app/graph.py): built in the replica."""

    async def on_before_node_init(self) -> None:
        engine = self.llm_config.get_engine_config()
        if engine is None or engine.mirror_config is not None or is_remote_path(engine.actual_hf_model_id):
            return  # a download to make: ray.serve.llm's own node initialization runs
        # The skipped step's one other effect: torch cannot create its hub's kernels
        # directory when the parent is missing (Ray's workaround there, kept here).
        import torch

        os.makedirs(os.path.join(torch.hub._get_torch_home(), "kernels"), exist_ok=True)
        self.ctx.run_init_node = False
