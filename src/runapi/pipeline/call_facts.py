"""What the access log learns from the pipeline about the call a request made: model, generation, cost.

The edge that logs requests sets `CALL_FACTS` to a fresh `CallFacts` for each request; the
pipeline fills it where the facts are known anyway (`note_settlement`, when a call's row and charge
are made). Without a logging edge the variable is unset and noting costs one context-variable read.
"""

from __future__ import annotations

from contextvars import ContextVar


class CallFacts:
    """One request's call: filled by the pipeline, read by the access log after the response."""

    __slots__ = ("model", "generation_id", "cost_nanos", "outcome")

    def __init__(self) -> None:
        self.model = ""
        self.generation_id = ""
        self.cost_nanos: int | None = None  # the charge; None while no settlement was made
        self.outcome = ""  # succeeded | failed | cancelled (the generation's status)


CALL_FACTS: ContextVar[CallFacts | None] = ContextVar("runapi_call_facts", default=None)


def note_settlement(model: str, generation_id: str, outcome: str, charge_nanos: int) -> None:
    """Record the call's settlement on the current request's facts, if a logging edge asked for them."""
    facts = CALL_FACTS.get()
    if facts is not None:
        facts.model = model
        facts.generation_id = generation_id
        facts.outcome = outcome
        facts.cost_nanos = charge_nanos
