"""`agentmeta serve`: an agent behind the OpenAI chat-completions API (`create_app`)."""

from agentmeta.serve.app import create_app, task_of

__all__ = ["create_app", "task_of"]
