"""helpers: hook-instrumented transformers with the classic TransformerLens API, for the course.

Importing helpers is light: transformers, huggingface_hub and circuitsvis are imported where they are used,
plotly by helpers.plot and helpers.othello_plots. Training code lives outside, in training/.
"""

from helpers import utils
from helpers.activation_cache import ActivationCache
from helpers.config import HookedTransformerConfig
from helpers.factored_matrix import FactoredMatrix
from helpers.hook_points import HookedRootModule, HookPoint
from helpers.model import HookedTransformer
from helpers.past_key_value_caching import HookedTransformerKeyValueCache, TransformerLensKeyValueCache

__all__ = [
    "ActivationCache",
    "FactoredMatrix",
    "HookPoint",
    "HookedRootModule",
    "HookedTransformer",
    "HookedTransformerConfig",
    "HookedTransformerKeyValueCache",
    "TransformerLensKeyValueCache",
    "utils",
]
