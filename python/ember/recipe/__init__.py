"""Ember's Recipe API, with the names of ``nvflare.recipe``: describe a job in Python,
export it as a job folder (docs/job-format.md), or run it with the C++ simulator.

    from ember.recipe import FedAvgRecipe, SimEnv
    recipe = FedAvgRecipe(name="hello-numpy", model={"w": np.zeros(3)}, min_clients=2,
                          num_rounds=3, train_script="client.py")
    run = recipe.execute(SimEnv(num_clients=2))
    print(run.get_status(), run.get_result())

No FL logic runs in Python: the recipe validates its arguments and writes files.
"""

from .fedavg import FedAvgRecipe, FrameworkType, TransferType
from .run import Run
from .sim_env import SimEnv, find_ember_binary
from .utils import add_experiment_tracking

__all__ = ["FedAvgRecipe", "FrameworkType", "Run", "SimEnv", "TransferType",
           "add_experiment_tracking", "find_ember_binary"]
