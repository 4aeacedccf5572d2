"""Scoring: batch inference and fusion of task predictions into one ranking score.

``score`` runs a registered model over a day's rows in Spark (``inference``: the network in the
Python workers) and writes the ``scores`` table; ``weights`` computes the dynamic strategy's
segment weights (``fusion-weights``), ``gates`` trains and finds the learned gate
(``fusion-train``), ``evaluate`` compares the strategies offline (``fusion-eval``), all three from
``labelled`` scored exposures; ``fusion`` holds the terms and the linear, power and dynamic
strategies as Spark columns and NumPy arrays; ``learned`` the gating network of the learned
strategy; ``business`` the realized gain, NDCG@K, revenue@K and the linear grid search. Their
conf sections (``FusionConf``, ``ScoringConf``) live in ``pipeline.config``.
"""
