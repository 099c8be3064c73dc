"""TransformerLens' module name for the loading functions it keeps there: a plain re-export of helpers.loading's."""

from helpers.loading import fill_missing_keys, get_checkpoint_labels, get_pretrained_model_config

__all__ = ["fill_missing_keys", "get_checkpoint_labels", "get_pretrained_model_config"]
