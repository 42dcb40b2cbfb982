"""Things with a start and a stop, as context managers: a start that fails halfway stops what it
had started, and a stop runs however the block ends."""
from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T", bound="StartStop")


class StartStop:
    def start(self) -> Any:
        raise NotImplementedError

    def stop(self) -> Any:
        raise NotImplementedError

    def __enter__(self: T) -> T:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Timed:
    """Something that ran from ``started`` to ``ended`` (time.monotonic()); a mixin for dataclasses."""
    started: float
    ended: float

    @property
    def seconds(self) -> float:
        return self.ended - self.started
