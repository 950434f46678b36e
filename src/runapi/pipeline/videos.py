"""Video calls on the pipeline: the credit held at submission and the settlement on success.

A video job runs for minutes and must survive a restart, so its credit hold outlives the process:
`hold_video` admits the call and holds its price like any call (`Reservation.open`, 402 when short),
and the task layer then writes the hold into the ledger (a `hold` entry) and tells the reservation
(`Reservation.kept_in_ledger`). `video_settlement` is the generation row and charge written with the
hold's release when the video was delivered.
"""

from __future__ import annotations

import time

from runapi.catalog import ModelEntry
from runapi.money import nanos_to_usd
from runapi.pipeline.auth import Principal
from runapi.pipeline.call_services import CallServices
from runapi.pipeline.metering import CallRecord
from runapi.pipeline.reservation import Reservation
from runapi.providers import Deployment
from runapi.storage import Settlement

__all__ = ["hold_video", "video_settlement"]


async def hold_video(gw: CallServices, principal: Principal, entry: ModelEntry, price_nanos: int) -> Reservation:
    """Admit a video call and hold its price, or raise the refusal (`InsufficientCredit`, `RateLimited`...)."""
    return await Reservation.open(gw.credit, gw.limits, principal, entry.id, prompt_tokens=0, output_tokens=0,
                                  max_cost_nanos=price_nanos)


def video_settlement(entry: ModelEntry, *, account_id: str, key_id: str, generation_id: str,
                     deployment: Deployment, units: int, price_nanos: int, hold_nanos: int,
                     client_request_id: str) -> Settlement:
    """The delivered video's generation row and charge: `units` × the unit price fixed at submission
    (`price_nanos` in all), never more than the hold."""
    record = CallRecord(account_id=account_id, key_id=key_id, entry=entry, stream=False, started=time.perf_counter(),
                        client_request_id=client_request_id, prompt_bytes=0)
    record.generation_id = generation_id
    record.deployment = deployment
    unit_price = nanos_to_usd(price_nanos) / units  # exact: price_nanos was units × the unit price
    return record.unit_settlement("succeeded", units, unit_price, cap=lambda cost: min(cost, hold_nanos))
