"""The per-epoch training record returned by ``fit``."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class History:
    """Per-epoch metrics (``lr`` is the rate of the epoch's last step). ``accuracy`` entries are None for losses without one (mse);
    ``val_*`` entries are None when no validation data was given.

    ``history["loss"]`` and ``history.loss`` are the same list.
    """

    epoch: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    accuracy: list[float | None] = field(default_factory=list)
    val_loss: list[float | None] = field(default_factory=list)
    val_accuracy: list[float | None] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    time: list[float] = field(default_factory=list)

    def __getitem__(self, key: str) -> list:
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def __len__(self) -> int:
        return len(self.epoch)

    def as_dict(self) -> dict[str, list]:
        """The record as a plain dict of lists."""
        return {k: list(getattr(self, k)) for k in self.__dataclass_fields__}

    def append(self, **values: object) -> None:
        for key in self.__dataclass_fields__:
            getattr(self, key).append(values[key])
