"""The operator's API under `/admin/`, guarded by `RUNAPI_ADMIN_TOKEN` (compared in constant time)."""

from __future__ import annotations

import hmac
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from runapi.errors import AuthError, InvalidRequest, PermissionDenied
from runapi.http.account_api import generation_json
from runapi.http.responses import json_response, read_json
from runapi.money import nanos_to_usd, usd_to_nanos
from runapi.pipeline.gateway import Gateway
from runapi.query import int_param, text_param
from runapi.storage import Account, ApiKey, Change, LedgerEntry


class NewAccount(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    tier: str = "free"


class NewKey(msgspec.Struct, forbid_unknown_fields=True):
    name: str = ""
    expires_at: datetime | None = None


class Credit(msgspec.Struct, forbid_unknown_fields=True):
    amount_usd: str
    kind: str = "topup"
    note: str = ""


def _gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    token = gw.settings.admin_token
    if not token:
        raise PermissionDenied("The admin API is disabled: set RUNAPI_ADMIN_TOKEN to enable it.")
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise AuthError("The admin API needs `Authorization: Bearer $RUNAPI_ADMIN_TOKEN`.", code="invalid_admin_token")
    return gw


admin_gateway = _gateway  # the same guard, for the other admin modules


def account_json(account: Account, balance_nanos: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"id": account.id, "name": account.name, "tier": account.tier,
                            "created": int(account.created_at.timestamp())}
    if balance_nanos is not None:
        data["balance"] = nanos_to_usd(balance_nanos)
    return data


def key_json(key: ApiKey) -> dict[str, Any]:
    return {"id": key.id, "account_id": key.account_id, "name": key.name, "prefix": key.prefix,
            "created": int(key.created_at.timestamp()),
            "expires_at": key.expires_at.isoformat() if key.expires_at else None,
            "revoked": key.revoked_at is not None}


def entry_json(entry: LedgerEntry) -> dict[str, Any]:
    return {"id": entry.id, "kind": entry.kind, "amount": nanos_to_usd(entry.amount_nanos),
            "generation_id": entry.generation_id, "note": entry.note, "created": int(entry.created_at.timestamp())}


async def create_account(request: Request) -> Response:
    gw = _gateway(request)
    body: NewAccount = await read_json(request, NewAccount)
    account = await gw.accounts.create_account(body.name, body.tier)
    return json_response(account_json(account, 0), status_code=201)


async def list_accounts(request: Request) -> Response:
    gw = _gateway(request)
    await gw.settlements.flush()  # read-your-writes: settlements answered but not yet committed
    rows = []
    for account in await gw.accounts.list_accounts():
        balance, _ = await gw.ledger.balance(account.id)
        rows.append(account_json(account, balance))
    return json_response({"object": "list", "data": rows})


async def get_account(request: Request) -> Response:
    gw = _gateway(request)
    await gw.settlements.flush()  # read-your-writes: settlements answered but not yet committed
    account = await gw.accounts.find_account(request.path_params["account_id"])
    balance, _ = await gw.ledger.balance(account.id)
    return json_response(account_json(account, balance))


async def create_key(request: Request) -> Response:
    gw = _gateway(request)
    body: NewKey = await read_json(request, NewKey)
    account = await gw.accounts.find_account(request.path_params["account_id"])
    key, secret = await gw.accounts.create_key(account.id, body.name, body.expires_at)
    return json_response({**key_json(key), "key": secret}, status_code=201)


async def list_keys(request: Request) -> Response:
    gw = _gateway(request)
    account = await gw.accounts.find_account(request.path_params["account_id"])
    return json_response({"object": "list", "data": [key_json(k) for k in await gw.accounts.list_keys(account.id)]})


async def revoke_key(request: Request) -> Response:
    gw = _gateway(request)
    key = await gw.accounts.revoke_key(request.path_params["key_id"])
    await gw.announce(Change("key", key.id))  # every instance refuses it at once
    return json_response(key_json(key))


async def add_credit(request: Request) -> Response:
    gw = _gateway(request)
    await gw.settlements.flush()  # read-your-writes: settlements answered but not yet committed
    body: Credit = await read_json(request, Credit)
    account = await gw.accounts.find_account(request.path_params["account_id"])
    try:
        amount = usd_to_nanos(Decimal(body.amount_usd))
    except (InvalidOperation, ValueError) as exc:
        raise InvalidRequest(f"amount_usd must be a decimal number of USD, got {body.amount_usd!r}",
                             param="amount_usd") from exc
    entry = await gw.add_credit(account.id, body.kind, amount, body.note)
    balance, _ = await gw.ledger.balance(account.id)
    return json_response({"entry": entry_json(entry), "balance": nanos_to_usd(balance)}, status_code=201)


async def list_ledger(request: Request) -> Response:
    gw = _gateway(request)
    await gw.settlements.flush()  # read-your-writes: settlements answered but not yet committed
    account = await gw.accounts.find_account(request.path_params["account_id"])
    return json_response({"object": "list", "data": [entry_json(e) for e in await gw.ledger.entries(account.id)]})


async def list_generations(request: Request) -> Response:
    gw = _gateway(request)
    await gw.settlements.flush()  # read-your-writes: settlements answered but not yet committed
    account_id = text_param(request.query_params, "account_id")
    limit = int_param(request.query_params, "limit", 100, 1, 1000)
    rows = await gw.ledger.generations(account_id, limit=limit)
    return json_response({"object": "list", "data": [generation_json(r) for r in rows]})


routes = [
    Route("/admin/accounts", create_account, methods=["POST"]),
    Route("/admin/accounts", list_accounts, methods=["GET"]),
    Route("/admin/accounts/{account_id}", get_account, methods=["GET"]),
    Route("/admin/accounts/{account_id}/keys", create_key, methods=["POST"]),
    Route("/admin/accounts/{account_id}/keys", list_keys, methods=["GET"]),
    Route("/admin/accounts/{account_id}/credits", add_credit, methods=["POST"]),
    Route("/admin/accounts/{account_id}/ledger", list_ledger, methods=["GET"]),
    Route("/admin/keys/{key_id}", revoke_key, methods=["DELETE"]),
    Route("/admin/generations", list_generations, methods=["GET"]),
]
