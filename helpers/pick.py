"""``pick_model``: the model a notebook's set-up cell loads, the real one or its embedded stand-in."""

from __future__ import annotations

from helpers.loading import DamagedFileError, choose_model
from helpers.model import HookedTransformer


def pick_model(real_name: str, **kwargs) -> HookedTransformer:
    """``HookedTransformer.from_pretrained(choose_model(real_name), **kwargs)``: the real model when its weights
    can be had, else its embedded stand-in (``loading.choose_model`` prints which, and why). A damaged file of
    the real model is an error that also says how to go on with the stand-in."""
    name = choose_model(real_name)
    try:
        return HookedTransformer.from_pretrained(name, **kwargs)
    except DamagedFileError as e:
        raise DamagedFileError(f"{e}\nMeanwhile, the course's embedded stand-in runs with no download: set "
                               "COURSE_EMBEDDED_MODELS=1 (or os.environ['COURSE_EMBEDDED_MODELS'] = '1') before "
                               "pick_model.") from None
