"""One function per endpoint: authorise → limit → route → call the adapter → meter."""

from runapi.pipeline.auth import Authenticator, Principal
from runapi.pipeline.auth_guard import FailedAuthGuard
from runapi.pipeline.auth_guard_redis import RedisFailedAuthGuard
from runapi.pipeline.call_facts import CALL_FACTS, CallFacts
from runapi.pipeline.call_services import CallServices, known_model
from runapi.pipeline.chat import ChatStream, Completed, complete_chat, open_chat_stream
from runapi.pipeline.circuit import CircuitBreakers
from runapi.pipeline.completions import complete_text, open_text_stream
from runapi.pipeline.embeddings import create_embeddings
from runapi.pipeline.images import create_images
from runapi.pipeline.messages import (
    complete_messages,
    count_message_tokens,
    open_messages_stream,
    prepare_messages_call,
)
from runapi.pipeline.reservation import Reservation
from runapi.pipeline.responses import (
    complete_responses,
    open_responses_stream,
    prepare_responses_call,
)
from runapi.pipeline.routing import deployment_key, deployments_for, fallback_models
from runapi.pipeline.videos import hold_video, video_settlement

__all__ = [
    "CALL_FACTS",
    "Authenticator",
    "CallFacts",
    "CallServices",
    "known_model",
    "ChatStream",
    "CircuitBreakers",
    "Completed",
    "Reservation",
    "FailedAuthGuard",
    "Principal",
    "RedisFailedAuthGuard",
    "complete_chat",
    "complete_messages",
    "complete_responses",
    "complete_text",
    "count_message_tokens",
    "create_embeddings",
    "create_images",
    "deployment_key",
    "deployments_for",
    "fallback_models",
    "hold_video",
    "open_chat_stream",
    "open_messages_stream",
    "open_responses_stream",
    "open_text_stream",
    "prepare_messages_call",
    "prepare_responses_call",
    "video_settlement",
]
