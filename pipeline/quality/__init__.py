"""The model-quality suite: every model trained on a family of generated worlds and scored
against the generator's truth (the oracle) and a logistic-regression floor."""
