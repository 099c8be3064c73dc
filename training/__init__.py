"""Training of the course's embedded models (run from the repository root; never imported by helpers).

    python -m training.train <model name>    # train (resumable), then ship to data/models
    python -m training.ship                  # print the README's table of the course models
"""
