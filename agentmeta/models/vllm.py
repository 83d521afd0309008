"""In-process vLLM engine (GPU only; `pip install 'agentmeta[vllm]'`).

`vllm/<model>` or `vllm/<model>:<lora dir>`. vLLM batches continuously inside `LLM.chat`, so the
whole batch goes in one call; structured output uses `StructuredOutputsParams(json=...)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentmeta.errors import ModelLoadError, require
from agentmeta.models.base import Provider
from agentmeta.models.fingerprint import check_unchanged, digest, load_fingerprint
from agentmeta.models.types import FinishReason, GenerateRequest, GenerateResponse

INSTALL = "pip install 'agentmeta[vllm]' (needs a CUDA GPU)"


class VLLMProvider(Provider):
    batching = True
    max_batch = 256

    def __init__(self, model: str, *, adapter: str | None = None, **engine_args: Any) -> None:
        super().__init__()
        if ":" in model and adapter is None:
            model, adapter = model.split(":", 1)
        vllm = require("vllm", INSTALL, "vLLM")
        try:
            import torch

            has_gpu = torch.cuda.is_available()
        except ImportError:  # pragma: no cover
            has_gpu = False
        if not has_gpu:
            raise ModelLoadError(
                f"vllm/{model} needs a CUDA GPU; none is visible (use smollm2 or hf/... on CPU)"
            )
        self.model_name = model
        self.adapter = adapter
        self.spec = f"vllm/{model}" + (f":{adapter}" if adapter else "")
        if adapter:
            engine_args.setdefault("enable_lora", True)
            if not Path(adapter).is_dir():
                raise ModelLoadError(f"LoRA adapter directory {adapter!r} does not exist")
        files_before = load_fingerprint(model, adapter)
        self.llm = vllm.LLM(model=model, **engine_args)
        self._lora: Any = None
        if adapter:
            from vllm.lora.request import LoRARequest

            self._lora = LoRARequest("adapter", 1, adapter)
        files = check_unchanged(files_before, model, adapter)
        self.engine_args = dict(engine_args)
        self._identity = "vllm:" + digest(
            {"files": files, "engine_args": self.engine_args, "vllm": getattr(vllm, "__version__", "")}
        )

    def identity(self) -> str:
        """Fingerprints of the model's and adapter's files (as `HFProvider`), the engine args and
        the vLLM version, computed at load time."""
        return self._identity

    def _params(self, request: GenerateRequest) -> Any:
        from vllm import SamplingParams

        kwargs: dict[str, Any] = dict(
            n=request.n,
            temperature=request.temperature,
            top_p=request.top_p,
            max_tokens=request.max_tokens,
            stop=request.stop or None,
            seed=request.seed,
        )
        if request.json_schema is not None:
            from vllm.sampling_params import StructuredOutputsParams

            kwargs["structured_outputs"] = StructuredOutputsParams(json=request.json_schema)
        return SamplingParams(**kwargs)

    def generate_batch(self, requests: Sequence[GenerateRequest]) -> list[GenerateResponse]:
        self.backend_calls += 1
        conversations = [[m.model_dump() for m in r.messages] for r in requests]
        outputs = self.llm.chat(
            conversations, [self._params(r) for r in requests], lora_request=self._lora, use_tqdm=False
        )
        out = []
        for o in outputs:
            finish: list[FinishReason] = [
                "length" if c.finish_reason == "length" else "stop" for c in o.outputs
            ]
            out.append(
                GenerateResponse(
                    texts=[c.text for c in o.outputs],
                    prompt_tokens=len(o.prompt_token_ids or []),
                    completion_tokens=[len(c.token_ids) for c in o.outputs],
                    finish_reasons=finish,
                )
            )
        return out
