"""The values a training script exchanges with Ember, named as in NVIDIA FLARE
(``nvflare.app_common.abstract.fl_model`` and ``nvflare.apis.analytix``) so a script
ported from FLARE keeps working after changing only its import.

    model = FLModel(params={"w": w}, metrics={"accuracy": 0.9},
                    meta={"NUM_STEPS_CURRENT_ROUND": 100})

Thread-safety: plain values; not synchronised.
"""

from __future__ import annotations

import enum
from typing import Any, Dict, Optional, Union


class ParamsType(str, enum.Enum):
    """What ``FLModel.params`` holds: the whole model or its change since the task."""
    FULL = "FULL"
    DIFF = "DIFF"


class AnalyticsDataType(str, enum.Enum):
    """Kinds of values ``log()`` accepts (FLARE's names; Ember carries the first five)."""
    SCALAR = "SCALAR"
    SCALARS = "SCALARS"
    METRIC = "METRIC"
    METRICS = "METRICS"
    TEXT = "TEXT"
    IMAGE = "IMAGE"
    PARAMETER = "PARAMETER"
    PARAMETERS = "PARAMETERS"
    TAG = "TAG"
    TAGS = "TAGS"
    LOG_RECORD = "LOG_RECORD"
    INIT_DATA = "INIT_DATA"


class FLModel:
    """A model with its round, metrics and free-form meta, as FLARE's FLModel.

    `params` maps tensor name to a numpy array (or torch tensor). If `params` is given
    without `params_type`, it is FULL; a params_type without params is an error.
    """

    def __init__(self, params_type: Union[None, str, ParamsType] = None, params: Any = None,
                 optimizer_params: Any = None, metrics: Optional[Dict] = None,
                 start_round: Optional[int] = 0, current_round: Optional[int] = None,
                 total_rounds: Optional[int] = None, meta: Optional[Dict] = None):
        if params_type is None:
            params_type = ParamsType.FULL if params is not None else None
        else:
            try:
                params_type = ParamsType(params_type)
            except ValueError:
                raise ValueError(f"params_type {params_type!r} is not one of "
                                 f"{[p.value for p in ParamsType]}") from None
            if params is None:
                raise ValueError(f"params_type is {params_type.value} but params is None")
        self.params_type = params_type
        self.params = params
        self.optimizer_params = optimizer_params
        self.metrics = metrics
        self.start_round = start_round
        self.current_round = current_round
        self.total_rounds = total_rounds
        self.meta = {} if meta is None else meta

    def summary(self) -> Dict[str, Any]:
        """A short description: tensor counts instead of tensors, so it prints fast."""
        return {
            "params_type": self.params_type.value if self.params_type else None,
            "params": len(self.params) if self.params is not None else None,
            "optimizer_params": (len(self.optimizer_params)
                                 if self.optimizer_params is not None else None),
            "metrics": self.metrics,
            "start_round": self.start_round,
            "current_round": self.current_round,
            "total_rounds": self.total_rounds,
            "meta": self.meta,
        }

    def __repr__(self) -> str:
        return f"FLModel({self.summary()})"

    __str__ = __repr__
