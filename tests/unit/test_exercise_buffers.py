"""Exercise 06.2 on a state dict saved by TransformerLens, as the real Othello-GPT file is: besides the
weights it carries each layer's causal mask and IGNORE constant, which the model rebuilds and does not hold."""

import torch

from helpers import course_models, othello
from helpers import exercises as ex
from helpers.model import HookedTransformer


def test_06_2_accepts_the_attention_buffers_of_transformer_lens_files():
    cfg, state_dict = course_models.load_course_model("course-othello-gpt")
    with_buffers = dict(state_dict)
    for layer in range(cfg.n_layers):
        with_buffers[f"blocks.{layer}.attn.mask"] = torch.ones(cfg.n_ctx, cfg.n_ctx).tril().bool()
        with_buffers[f"blocks.{layer}.attn.IGNORE"] = torch.tensor(-1e5)
    reference = HookedTransformer.from_pretrained("course-othello-gpt")
    tokens = torch.tensor(othello.to_token(othello.generate_games(1, seed=0)))[:, :cfg.n_ctx]

    def model_from_state_dict(sd):
        model = HookedTransformer(ex._config_from_state_dict(sd))
        model.load_state_dict(sd)
        return model

    ex.check_model_from_state_dict(model_from_state_dict, with_buffers, reference, tokens)  # raises if refused
