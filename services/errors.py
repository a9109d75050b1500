"""Domain errors. Handlers turn them into HTTP statuses and chat answers (through templates)."""

from __future__ import annotations


class AlertpilotError(Exception):
    """Base class of the errors that services raise on purpose."""


class InvalidPayload(AlertpilotError):
    """An incoming webhook body is not what its source documents; ``field`` names the culprit."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


class IncidentNotFound(AlertpilotError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"no incident {ref}")
        self.ref = ref


class InvalidIncidentRef(AlertpilotError):
    def __init__(self, text: str) -> None:
        super().__init__(f"{text!r} is not an incident id such as INC-12")
        self.text = text


# --- delivery errors, raised by chat gateways (bot/chat/*) and handled by the outbox sender ---


class DeliveryError(AlertpilotError):
    """Base of the errors a chat gateway raises when a send did not happen."""


class RateLimited(DeliveryError):
    def __init__(self, retry_after: float, detail: str = "") -> None:
        super().__init__(f"rate limited, retry after {retry_after}s {detail}".strip())
        self.retry_after = retry_after


class TransientDeliveryError(DeliveryError):
    """5xx, timeouts, connection errors: try again later with backoff."""


class MessageGone(DeliveryError):
    """The message to edit no longer exists (deleted in the chat)."""


class PermanentDeliveryError(DeliveryError):
    """A 4xx other than rate limiting: retrying the same request cannot succeed."""


# --- the AI model, raised by services.llm and handled by the decision engine and the assistant ---


class ModelError(AlertpilotError):
    """The model gave no answer. ``reason`` is a short metric-friendly word."""

    reason = "unavailable"


class ModelTimeout(ModelError):
    reason = "timeout"


class ModelUnavailable(ModelError):
    """HTTP error status, connection refused or reset, or a reply that is not a chat completion."""

    reason = "unavailable"


class ToolsUnsupported(ModelUnavailable):
    """The server (or the model it serves) cannot take ``tools``: fall back to the single-shot prompt."""

    reason = "tools_unsupported"


class InvalidModelOutput(ModelError):
    """The model answered, but not with the JSON asked for (after the repair attempt)."""

    reason = "invalid_output"


class InvalidPlaybooks(AlertpilotError):
    """The playbooks file is unreadable or wrong; the message names the file, the playbook and the field."""
