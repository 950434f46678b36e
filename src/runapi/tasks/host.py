"""What the task runtime needs from the running gateway (`runtime.Gateway` provides it): what one
call needs, to run a task's call, plus the settings, the database the task stores live in, the
change probe its idle pollers watch, the account service (keys, refunds) and the media store (videos)."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from runapi.config import Settings
from runapi.media.runtime import MediaRuntime
from runapi.pipeline import CallServices
from runapi.services import AccountService
from runapi.storage import ChangeProbe


class TaskHost(CallServices, Protocol):
    @property
    def settings(self) -> Settings: ...
    @property
    def engine(self) -> AsyncEngine: ...
    @property
    def change_probe(self) -> ChangeProbe: ...
    @property
    def accounts(self) -> AccountService: ...
    @property
    def media(self) -> MediaRuntime: ...
