"""One error hierarchy. Messages say what was expected, what came, and the fix.

The CLI turns any `AgentMetaError` into one line on stderr and exit code 2.
"""

from __future__ import annotations


class AgentMetaError(Exception):
    """Base class of every error agentmeta raises on purpose."""


class ConfigError(AgentMetaError):
    """A setting, spec string or argument is not valid."""


class ModelSpecError(ConfigError):
    """A model spec string is not one of the valid forms."""


class MissingExtraError(AgentMetaError):
    """An optional dependency is not installed."""

    def __init__(self, what: str, install: str) -> None:
        super().__init__(f"{what} is not installed: run `{install}`")
        self.install = install


class InfrastructureError(AgentMetaError):
    """The machinery failed, not the agent being evaluated: a model server that does not answer,
    a backend that crashed, a sandbox that could not start. An evaluation retries the sample, then
    leaves it out of the mean and counts it; it is never scored as the agent's 0."""


class ModelLoadError(AgentMetaError):
    """A model could not be loaded."""


class ModelCallError(InfrastructureError):
    """A model call failed for reasons outside the request (server down, bad reply, backend error)."""


class ModelRequestError(ConfigError):
    """A request was rejected as invalid (unknown field, unsupported JSON schema, HTTP 4xx): the
    caller's fault, so an agent that sends it fails on its own."""


class DataError(AgentMetaError):
    """Input data (a file, a record) is malformed."""


class ArchiveError(AgentMetaError):
    """An archive is corrupt, foreign, newer than this version, or asked for a record it lacks."""


def unknown_keys(given: object, valid: list[str]) -> list[str]:
    """The keys of `given` (a mapping) that are not in `valid`, each quoted with a did-you-mean hint."""
    import difflib

    if not isinstance(given, dict):
        return []
    hints = []
    for key in given:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return hints


def require(module: str, install: str, what: str | None = None):  # noqa: ANN201
    """Import `module` or raise `MissingExtraError` naming the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - depends on environment
        raise MissingExtraError(what or module, install) from e


class InvalidAgentError(AgentMetaError):
    """A candidate agent is not valid (syntax error, missing forward, bad spec)."""


class SandboxUnavailableError(ConfigError):
    """No isolation works on this machine (neither bubblewrap nor `unshare`) and the user did not
    opt in to running generated code unisolated. A setup problem: an evaluation stops on it
    rather than retrying or scoring samples."""


class SandboxError(InfrastructureError):
    """The sandbox could not start or talk to a worker (not a failure of the sandboxed code)."""


class WorkerKilledError(SandboxError):
    """A sandbox worker was killed from outside its job (the host's OOM killer, an operator's
    signal) while running it: the machinery's failure, retried; if it recurs on every attempt of
    the same seeded sample, the evaluation counts it as the agent's error."""


class ModelStallError(ModelCallError):
    """A model call made by sandboxed code did not return within the sandbox's
    `model_call_seconds`: the model stalled, so the job was stopped without blaming the agent."""
