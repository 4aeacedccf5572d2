"""mtrank: raw exposure, click and conversion logs to entire-space samples, multi-task ranking
models and fused scores, as Spark + Delta batch jobs."""

__version__ = "0.2.0"
