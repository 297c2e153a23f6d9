"""Experiment tracking for training scripts, named as FLARE's
``nvflare.client.tracking``: each call becomes a ``link.log`` fire message to the ember
client, which records it (docs/wire-format.md §6).

    writer = SummaryWriter()
    writer.add_scalar("loss", 0.25, global_step=10)

Thread-safety: as ``ember.client.log`` (safe while another thread waits in receive()).
"""

from __future__ import annotations

from typing import Dict, Optional

from .model import AnalyticsDataType


def _log(*args, **kwargs):
    from . import log  # late: the package imports this module
    log(*args, **kwargs)


class SummaryWriter:
    """TensorBoard-like writer whose values go to Ember instead of an events file."""

    def add_scalar(self, tag: str, scalar: float, global_step: Optional[int] = None,
                   **kwargs) -> None:
        _log(tag, scalar, AnalyticsDataType.SCALAR, global_step=global_step, **kwargs)

    def add_scalars(self, tag: str, scalars: Dict[str, float],
                    global_step: Optional[int] = None, **kwargs) -> None:
        _log(tag, scalars, AnalyticsDataType.SCALARS, global_step=global_step, **kwargs)

    def add_text(self, tag: str, text: str, global_step: Optional[int] = None,
                 **kwargs) -> None:
        _log(tag, text, AnalyticsDataType.TEXT, global_step=global_step, **kwargs)

    def flush(self) -> None:
        """Nothing is buffered: every value is sent when it is added."""

    def close(self) -> None:
        """Nothing to release; kept so TensorBoard code runs unchanged."""
