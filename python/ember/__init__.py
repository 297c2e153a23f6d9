"""Ember: a federated-learning runtime with a C++ engine.

This package is the pure-Python side: the Client API a training script imports
(``ember.client``, named like ``nvflare.client``) and the Recipe API that writes a job
folder and runs it (``ember.recipe``, named like ``nvflare.recipe``). Both speak the
protocol in docs/wire-format.md; no FL logic runs in Python.
"""

__version__ = "0.1.0"
