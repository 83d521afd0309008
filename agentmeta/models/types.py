"""The one request type and the one response type of the model layer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agentmeta.errors import ModelRequestError, unknown_keys

Role = Literal["system", "user", "assistant"]


def _reject_unknown(cls: type[BaseModel], data: Any, what: str) -> Any:
    """Raise `ModelRequestError` naming the unknown keys of `data` and the valid ones.

    Runs before pydantic's own validation (which forbids extra fields too), so the caller gets
    one line instead of a multi-line `ValidationError`.
    """
    valid = list(cls.model_fields)
    hints = unknown_keys(data, valid)
    if hints:
        raise ModelRequestError(
            f"unknown {what} field{'s' if len(hints) > 1 else ''} {', '.join(hints)}; "
            f"valid fields: {', '.join(valid)}"
        )
    return data


def request_error(e: ValidationError) -> ModelRequestError:
    """One line for a request that pydantic rejected: which field, and why."""
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err.get("loc", ())) or "request"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return ModelRequestError("invalid model request: " + "; ".join(parts))


class Message(BaseModel):
    """One chat message."""

    model_config = ConfigDict(extra="forbid")

    role: Role
    """Who speaks: system, user or assistant."""
    content: str
    """The text of the message."""

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        return _reject_unknown(cls, data, "message")


class GenerateRequest(BaseModel):
    """One call to a model: chat messages plus sampling settings.

    Unknown fields (a typo such as `max_token=`) raise `ModelRequestError`, never pass silently.
    """

    model_config = ConfigDict(extra="forbid")

    messages: list[Message]
    """The conversation, oldest first."""
    n: int = Field(default=1, ge=1, le=128)
    """How many completions to return."""
    temperature: float = Field(default=0.0, ge=0.0, le=5.0)
    """Sampling temperature; 0 means greedy."""
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    """Nucleus sampling mass."""
    max_tokens: int = Field(default=256, ge=1, le=32768)
    """Most new tokens per completion."""
    stop: list[str] = Field(default_factory=list)
    """Strings that end a completion (not included in the text)."""
    seed: int | None = None
    """Seed for sampling; seeded calls are cached on disk."""
    json_schema: dict[str, Any] | None = None
    """If set, every completion is JSON valid against this schema (constrained decoding)."""

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        return _reject_unknown(cls, data, "request")

    @field_validator("messages")
    @classmethod
    def _non_empty(cls, v: list[Message]) -> list[Message]:
        if not v:
            raise ValueError("messages must not be empty")
        return v

    @classmethod
    def build(cls, prompt: str | list[dict[str, str]] | list[Message], **kwargs: Any) -> GenerateRequest:
        """Build a request from a plain prompt string or a list of messages."""
        if "messages" in kwargs:
            raise ModelRequestError("give the messages as the prompt, not as messages=")
        if isinstance(prompt, str):
            messages: list[Any] = [Message(role="user", content=prompt)]
        else:
            messages = list(prompt)
        return cls(messages=messages, **kwargs)


FinishReason = Literal["stop", "length", "error"]


class GenerateResponse(BaseModel):
    """The completions of one request."""

    texts: list[str]
    """One text per completion (n of them)."""
    prompt_tokens: int = 0
    """Tokens in the prompt."""
    completion_tokens: list[int] = Field(default_factory=list)
    """New tokens per completion."""
    finish_reasons: list[FinishReason] = Field(default_factory=list)
    """Why each completion ended: stop (end of text or stop string) or length."""
    latency_s: float = 0.0
    """Wall time from the call to its answer, in seconds."""
    model: str = ""
    """The spec of the model that answered."""
    cached: bool = False
    """True if this response came from the disk cache."""

    @property
    def text(self) -> str:
        """The first completion."""
        return self.texts[0] if self.texts else ""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + sum(self.completion_tokens)


class Usage(BaseModel):
    """Token and call counts, summed over calls."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_calls: int = 0

    def add(self, response: GenerateResponse, *, count_cached: bool = False) -> None:
        """Count one response. A response served by the call cache adds to `cached_calls` and, by
        default, no tokens (nothing was spent); `count_cached=True` adds its tokens too (what the
        call costs on a cold cache: the per-sample records of an evaluation count this way)."""
        self.calls += 1
        if response.cached:
            self.cached_calls += 1
            if not count_cached:
                return
        self.prompt_tokens += response.prompt_tokens
        self.completion_tokens += sum(response.completion_tokens)

    def merge(self, other: Usage) -> None:
        """Add another tally's calls and tokens to this one."""
        self.calls += other.calls
        self.cached_calls += other.cached_calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens
