"""Conversion of published state dicts to the classic names, one module per model family.

Each module says what a family's files hold and how they map onto a HookedTransformer: its config
(``config_from_hf_<family>``), the tensors a state dict must have and their shapes (the shape table that
helpers.loading checks files against), and the renaming and reshaping of the weights
(``convert_<family>_weights``).

- ``gpt2``: transformers' GPT-2 (gpt2, gpt2-medium/large/xl, distilgpt2, and a user's own GPT-2).
- ``classic``: state dicts already in the classic format (Neel Nanda's toy models, othello-gpt): the sizes a
  file implies, the shape table of a classic config, and the buffers to drop.

helpers.loading fetches and checks the files and picks the family; helpers.weights processes the classic
state dict once it is converted.
"""
