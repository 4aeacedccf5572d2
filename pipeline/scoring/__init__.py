"""Scoring: batch inference and fusion of task predictions into one ranking score.

``score`` runs a registered model over a day's rows in Spark and writes the ``scores`` table, and
computes, trains and compares what the fusion strategies need (``fusion-weights``,
``fusion-train``, ``fusion-eval``); ``fusion`` holds the terms and the linear, power and dynamic
strategies as Spark columns and NumPy arrays; ``learned`` the gating network of the learned
strategy; ``business`` the realized gain, NDCG@K, revenue@K and the linear grid search. Their
conf sections (``FusionConf``, ``ScoringConf``) live in ``pipeline.config``.
"""
