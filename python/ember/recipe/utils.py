"""Recipe helpers named as FLARE's ``nvflare.recipe.utils``.

    add_experiment_tracking(recipe, "tensorboard")

Thread-safety: mutates the recipe; call before export/execute.
"""

from __future__ import annotations

from typing import Optional

TRACKING_TYPES = ("tensorboard", "mlflow", "wandb")


def add_experiment_tracking(recipe, tracking_type: str = "tensorboard",
                            tracking_config: Optional[dict] = None, client_side: bool = False,
                            server_side: bool = True) -> None:
    """Records the tracking choice in client.json ("tracking"). Scripts' log() /
    SummaryWriter values reach the ember client either way; what the runtime does with
    them for each tracking type is up to the C++ side."""
    if tracking_type not in TRACKING_TYPES:
        raise ValueError(f"tracking_type={tracking_type!r} must be one of {list(TRACKING_TYPES)}")
    if tracking_config is not None and not isinstance(tracking_config, dict):
        raise TypeError(f"tracking_config must be a dict, got {tracking_config!r}")
    if getattr(recipe, "tracking", None):
        raise RuntimeError("experiment tracking was already added to this recipe")
    recipe.tracking = {"type": tracking_type, "config": tracking_config or {},
                       "client_side": bool(client_side), "server_side": bool(server_side)}
