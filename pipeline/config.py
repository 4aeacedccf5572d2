"""Typed, validated, frozen configuration: ``Config``, one dataclass per section of the conf file.

The sections of a package live with it (``fusion`` and ``scoring`` in ``pipeline.scoring.conf``,
``nightly`` in ``pipeline.plan``, ``model`` in ``pipeline.models.spec``); the loading machinery is
``pipeline.confload``. The dataclass defaults are the embedded default configuration;
``conf/local.yaml`` spells them out (a test keeps the two equal). A conf file for another environment lists only what
differs; ``--set a.b=value`` overrides any key after the file is read. Unknown keys, wrong types,
out-of-range values and missing files raise ``ConfigError`` naming the key or the file.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import math
import types
from dataclasses import dataclass, field
from typing import Literal, Mapping, Optional, Sequence

from pipeline.confload import apply_override, build, frozen_dict, read_yaml, require
from pipeline.errors import ConfigError
from pipeline.logs.schema import SOURCES
from pipeline.models.spec import ModelSpec
from pipeline.plan import NightlyConf
from pipeline.scoring.conf import FusionConf, ScoringConf

TABLE_NAMES = ("samples", "quarantine", "runs", "models", "scores", "training_set", "fusion_weights")


def _local_spark_settings() -> Mapping[str, str]:
    """Spark settings for a small local master (a cluster conf file replaces them)."""
    return types.MappingProxyType({
        "spark.driver.memory": "6g",  # local mode: the driver is also the executor (default 1g)
        "spark.sql.shuffle.partitions": "4",
        "spark.databricks.delta.snapshotPartitions": "2",
        # A task writing a partitioned table (samples, quarantine, scores by dt) keeps up to this
        # many files open at once instead of sorting its rows by dt first.
        "spark.sql.maxConcurrentOutputFileWriters": "8",
        "spark.ui.showConsoleProgress": "false",
        # Python workers forked with torch, pyarrow and pandas already imported (pipeline/spark_daemon.py).
        "spark.python.daemon.module": "pipeline.spark_daemon",
    })


@dataclass(frozen=True)
class StorageConf:
    root: str = "./data"
    database: Optional[str] = None
    artifacts: Optional[str] = None  # model directories; None: <root>/artifacts (a local or mounted path)
    lock_wait_seconds: int = 0       # a run of a job and date that another holds: 0 fails at once, else waits


@dataclass(frozen=True)
class TablesConf:
    """Explicit table paths; ``None`` means ``<storage.root>/<name>``."""

    samples: Optional[str] = None
    quarantine: Optional[str] = None
    runs: Optional[str] = None
    models: Optional[str] = None
    scores: Optional[str] = None
    training_set: Optional[str] = None  # the encoded training set the models record a version of
    fusion_weights: Optional[str] = None  # per-segment weights of the dynamic fusion, by computation date


@dataclass(frozen=True)
class RawConf:
    """Raw log locations; ``None`` means ``<storage.root>/raw/<source>``."""

    format: Literal["json", "parquet", "delta"] = "json"
    exposures: Optional[str] = None
    clicks: Optional[str] = None
    conversions: Optional[str] = None
    # Input checks of every rebuilt date, before anything is written (pipeline/samples/checks.py).
    may_be_empty: tuple[str, ...] = ()     # sources allowed to have no partition for a date
    success_markers: Mapping[str, str] = field(default_factory=frozen_dict)  # source -> file every partition must hold
    max_quarantined_share: float = 0.25    # of a source's records of one date
    min_field_presence: float = 0.5        # share of a date's valid exposures that carry each declared feature

    def __post_init__(self) -> None:
        for name in (*self.may_be_empty, *self.success_markers):
            require(name in SOURCES, f"raw: unknown source {name!r} (one of {', '.join(SOURCES)})")
        require(0.0 <= self.max_quarantined_share <= 1.0, "raw.max_quarantined_share must be in [0, 1]")
        require(0.0 <= self.min_field_presence <= 1.0, "raw.min_field_presence must be in [0, 1]")


@dataclass(frozen=True)
class FeaturesConf:
    categorical: tuple[str, ...] = (
        "user_id", "item_id", "position", "category", "brand", "device", "user_age", "user_gender",
    )
    numeric: tuple[str, ...] = ("price", "user_activity")
    min_count: int = 2                    # rarer categorical values share index 0 with unknowns
    hash_buckets: Mapping[str, int] = field(default_factory=frozen_dict)  # feature -> buckets, instead of a vocabulary

    def __post_init__(self) -> None:
        both = set(self.categorical) & set(self.numeric)
        if both:
            raise ConfigError(f"features: {sorted(both)} listed as both categorical and numeric")
        require(self.min_count >= 1, "features.min_count must be >= 1")
        for name, buckets in self.hash_buckets.items():
            require(name in self.categorical, f"features.hash_buckets.{name}: not a categorical feature")
            require(buckets >= 1, f"features.hash_buckets.{name}: expected a positive integer, got {buckets!r}")


@dataclass(frozen=True)
class LabelsConf:
    click_window_hours: int = 24
    attribution_window_days: int = 3
    # How far back (days) a click's impression or a conversion's click is looked for; a child
    # whose parent is older is treated as if its parent had never arrived.
    max_delay_days: int = 7
    # A nightly run rebuilds from the oldest partition not yet final, at most this many days
    # before its date (a missed night heals on the next one).
    max_rebuild_days: int = 30

    def __post_init__(self) -> None:
        require(self.click_window_hours > 0, "labels.click_window_hours must be > 0")
        require(self.max_rebuild_days >= self.lookback_days,
                "labels.max_rebuild_days must be >= the lookback (click + attribution window days)")
        require(self.attribution_window_days >= 0, "labels.attribution_window_days must be >= 0")
        require(self.max_delay_days >= self.click_window_days + self.attribution_window_days,
                "labels.max_delay_days must cover the click and attribution windows")

    @property
    def click_window_days(self) -> int:
        """Event dates a click window can reach past its exposure's date (24 h -> 1)."""
        return -(-self.click_window_hours // 24)

    @property
    def lookback_days(self) -> int:
        """Days from an exposure's date to the last date its click or conversion can arrive on."""
        return self.click_window_days + self.attribution_window_days


@dataclass(frozen=True)
class SparkConf:
    master: str = "local[2]"
    app_name: str = "mtrank"
    log_level: Literal["ERROR", "WARN", "INFO", "DEBUG"] = "WARN"
    conf: Mapping[str, str] = field(default_factory=_local_spark_settings)
    # Pre-downloaded Delta jars (paths or URIs) for clusters without Maven access;
    # empty: Spark resolves io.delta:delta-spark from Maven at session start.
    delta_jars: tuple[str, ...] = ()


@dataclass(frozen=True)
class DirtConf:
    """Rates of dirty raw records, each relative to the clean records of the source it dirties."""

    duplicate: float = 0.01
    malformed: float = 0.001
    missing_field: float = 0.002
    bad_ts: float = 0.001
    orphan: float = 0.002
    negative_value: float = 0.01
    before_parent: float = 0.002

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            rate = getattr(self, f.name)
            require(0.0 <= rate <= 0.5, f"synth.dirt.{f.name} must be in [0, 0.5], got {rate}")


@dataclass(frozen=True)
class SynthConf:
    """The synthetic world of ``pipeline generate`` (sizes, rates, delays, dirt)."""

    seed: int = 7
    start_date: dt.date = dt.date(2026, 10, 1)
    days: int = 10
    exposures_per_day: int = 50_000
    slots_per_request: int = 6
    num_users: int = 1_000
    num_items: int = 300
    num_categories: int = 20
    num_brands: int = 200
    latent_dim: int = 8
    ctr: float = 0.10                 # mean true click probability over exposures
    cvr: float = 0.05                 # mean true conversion probability over clicks
    selection_bias: float = 1.0       # 0: clicks and conversions independent given features
    shared_interest: float = 0.9      # correlation of the CVR latent factors with the CTR ones, in [-1, 1]
    item_popularity_exponent: float = 0.8  # Zipf exponent of item popularity (0: uniform)
    user_activity_sigma: float = 0.8  # log-normal spread of user activity (0: every user alike)
    cold_share: float = 0.0           # share of users and of items that first appear on the last day
    affinity_scale: float = 1.0       # standard deviation of the user x item affinities
    click_delay_minutes: float = 5.0
    conversion_delay_hours: float = 12.0
    late_click_rate: float = 0.01     # clicks arriving after labels.click_window_hours
    late_conversion_rate: float = 0.05  # conversions after labels.attribution_window_days
    repeat_conversion_rate: float = 0.1  # converted clicks with a second order
    ts_epoch_ms_rate: float = 0.1     # records whose ts is epoch milliseconds
    ts_offset_rate: float = 0.1       # records whose ts carries a +02:00 offset
    rows_per_file: int = 1_000_000
    gzip: bool = False
    truth_path: Optional[str] = None  # None: <storage.root>/truth
    dirt: DirtConf = field(default_factory=DirtConf)

    def __post_init__(self) -> None:
        for name in ("days", "exposures_per_day", "slots_per_request", "num_users", "num_items",
                     "num_categories", "num_brands", "latent_dim", "rows_per_file"):
            require(getattr(self, name) >= 1, f"synth.{name} must be >= 1")
        for name in ("ctr", "cvr"):
            require(0.0 < getattr(self, name) < 1.0, f"synth.{name} must be in (0, 1)")
        for name in ("late_click_rate", "late_conversion_rate", "repeat_conversion_rate",
                     "ts_epoch_ms_rate", "ts_offset_rate"):
            require(0.0 <= getattr(self, name) <= 1.0, f"synth.{name} must be in [0, 1]")
        require(-1.0 <= self.shared_interest <= 1.0, "synth.shared_interest must be in [-1, 1]")
        require(self.item_popularity_exponent >= 0, "synth.item_popularity_exponent must be >= 0")
        require(self.user_activity_sigma >= 0, "synth.user_activity_sigma must be >= 0")
        require(0.0 <= self.cold_share < 1.0, "synth.cold_share must be in [0, 1)")
        require(self.affinity_scale >= 0, "synth.affinity_scale must be >= 0")
        require(self.ts_epoch_ms_rate + self.ts_offset_rate <= 1.0,
                "synth.ts_epoch_ms_rate + synth.ts_offset_rate must be <= 1")
        require(self.click_delay_minutes > 0, "synth.click_delay_minutes must be > 0")
        require(self.conversion_delay_hours > 0, "synth.conversion_delay_hours must be > 0")
        require(self.selection_bias >= 0, "synth.selection_bias must be >= 0")


@dataclass(frozen=True)
class TrainingConf:
    epochs: int = 3
    batch_size: int = 4096
    learning_rate: float = 0.01           # dense layers (AdamW)
    weight_decay: float = 0.0
    embedding_learning_rate: float = 0.05  # embedding tables
    validations_per_epoch: int = 4        # early stopping looks this often per epoch
    deep_epochs: Optional[int] = 1        # epochs the deep part trains, then the wide part alone (null: all)
    warmup_fraction: float = 0.05         # of all steps, linear warm-up before cosine decay
    schedule: Literal["cosine", "constant"] = "cosine"
    patience: int = 1                     # validations without improvement before stopping
    seed: int = 7
    loss_weighting: Literal["fixed", "uncertainty", "gradnorm"] = "fixed"
    loss_weights: Mapping[str, float] = field(default_factory=frozen_dict)  # fixed weights per loss key
    validation_days: int = 1              # days after --end used for early stopping
    test_days: int = 1                    # days after those, for the reported metrics (0: report validation)
    final_only: bool = True               # train only on partitions whose labels are final
    num_proc: int = 2                     # training processes (Spark tasks); 1 trains in this process
    backend: Literal["horovod", "torch_distributor"] = "horovod"  # what runs num_proc > 1 (docs/backends.md)
    time_limit_minutes: int = 240         # wall clock of a training job; past it the job fails
    stall_seconds: int = 300              # a rank that waits this long for the others fails the job

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "validation_days", "validations_per_epoch"):
            require(getattr(self, name) >= 1, f"training.{name} must be >= 1")
        require(self.learning_rate > 0 and self.embedding_learning_rate > 0,
                "training.learning_rate and training.embedding_learning_rate must be > 0")
        require(self.test_days >= 0 and self.patience >= 0, "training.test_days and training.patience must be >= 0")
        require(0.0 <= self.warmup_fraction < 1.0, "training.warmup_fraction must be in [0, 1)")
        require(self.num_proc >= 1, "training.num_proc must be >= 1")
        require(self.deep_epochs is None or self.deep_epochs >= 1, "training.deep_epochs must be >= 1 or null")
        require(self.time_limit_minutes >= 1 and self.stall_seconds >= 1,
                "training.time_limit_minutes and training.stall_seconds must be >= 1")


@dataclass(frozen=True)
class AliccpConf:
    """``pipeline import-aliccp``: where the public files are and their synthetic dates."""

    source: Optional[str] = None          # folder with sample_skeleton_*.csv / common_features_*.csv
    start_date: dt.date = dt.date(2018, 1, 1)
    train_days: int = 10                  # the train file spreads over these days
    test_days: int = 1                    # the test file over the days after them

    def __post_init__(self) -> None:
        require(self.train_days >= 1 and self.test_days >= 1, "aliccp.train_days and aliccp.test_days must be >= 1")


@dataclass(frozen=True)
class PromotionConf:
    """The gate between a trained model (a candidate) and the champion that ``score`` uses."""

    tolerance: float = 0.01               # a candidate may be this much below the champion on each metric
    # <task>.<metric> keys of the metrics JSON, compared on the candidate's report days (higher is better)
    metrics: tuple[str, ...] = ("ctr.auc", "ctcvr.auc")

    def __post_init__(self) -> None:
        require(math.isfinite(self.tolerance) and self.tolerance >= 0, "promotion.tolerance must be >= 0")
        require(bool(self.metrics), "promotion.metrics must not be empty")
        for name in self.metrics:
            task, _, metric = name.partition(".")
            require(task in ("ctr", "cvr", "ctcvr", "cvr_entire_space") and metric in ("auc", "gauc"),
                    f"promotion.metrics: {name!r} is not <task>.<metric> with a task of ctr, cvr, ctcvr, "
                    f"cvr_entire_space and a metric of auc, gauc (higher is better)")


@dataclass(frozen=True)
class MlflowConf:
    """Where ``pipeline train`` logs its runs and registers its models (``pipeline/tracking.py``)."""

    # None: sqlite:///<storage.root>/mlflow.db, artifacts under <storage.root>/mlflow-artifacts;
    # else any MLflow tracking URI (http://host:5000, databricks, sqlite:///path).
    tracking_uri: Optional[str] = None
    registry_uri: Optional[str] = None    # None: the tracking store (databricks: its workspace registry)
    experiment: str = "mtrank"            # runs go to this experiment (created on first use)
    registered_model: str = "mtrank"      # every trained model is a version of it; champion is its alias

    def __post_init__(self) -> None:
        require(bool(self.experiment.strip()), "mlflow.experiment must not be empty")
        require(bool(self.registered_model.strip()), "mlflow.registered_model must not be empty")


@dataclass(frozen=True)
class ReportConf:
    """``pipeline report``: where the self-contained HTML page is written."""

    path: str = "./reports/report.html"  # a local or mounted file path (or --out)

    def __post_init__(self) -> None:
        require(bool(self.path.strip()), "report.path must not be empty")
        require(self.path.lower().endswith((".html", ".htm")), f"report.path must end in .html, got {self.path!r}")


@dataclass(frozen=True)
class Config:
    storage: StorageConf = field(default_factory=StorageConf)
    tables: TablesConf = field(default_factory=TablesConf)
    raw: RawConf = field(default_factory=RawConf)
    features: FeaturesConf = field(default_factory=FeaturesConf)
    labels: LabelsConf = field(default_factory=LabelsConf)
    spark: SparkConf = field(default_factory=SparkConf)
    synth: SynthConf = field(default_factory=SynthConf)
    model: ModelSpec = field(default_factory=ModelSpec)
    training: TrainingConf = field(default_factory=TrainingConf)
    fusion: FusionConf = field(default_factory=FusionConf)
    scoring: ScoringConf = field(default_factory=ScoringConf)
    aliccp: AliccpConf = field(default_factory=AliccpConf)
    report: ReportConf = field(default_factory=ReportConf)
    nightly: NightlyConf = field(default_factory=NightlyConf)
    promotion: PromotionConf = field(default_factory=PromotionConf)
    mlflow: MlflowConf = field(default_factory=MlflowConf)

    def table_path(self, name: str) -> str:
        """Where table ``name`` lives: ``tables.<name>`` or ``<storage.root>/<name>``."""
        if name not in TABLE_NAMES:
            raise ValueError(f"unknown table {name!r}")
        return getattr(self.tables, name) or _join(self.storage.root, name)

    def raw_path(self, source: str) -> str:
        """Where raw source ``source`` lives: ``raw.<source>`` or ``<storage.root>/raw/<source>``."""
        if source not in SOURCES:
            raise ValueError(f"unknown raw source {source!r}")
        return getattr(self.raw, source) or _join(self.storage.root, "raw", source)

    @property
    def truth_path(self) -> str:
        return self.synth.truth_path or _join(self.storage.root, "truth")

    @property
    def artifacts_path(self) -> str:
        return self.storage.artifacts or _join(self.storage.root, "artifacts")


def load_config(path: Optional[str] = None, overrides: Sequence[str] = ()) -> Config:
    """Reads a conf file over the embedded defaults, then applies ``--set`` overrides.

    Args:
        path: a YAML file, or ``None`` for the embedded defaults alone.
        overrides: ``"a.b=value"`` strings; values are converted to the key's type.

    Raises:
        ConfigError: a one-line message naming the file, the key and what is wrong.
    """
    raw = read_yaml(path) if path else {}
    try:
        for item in overrides:
            apply_override(Config, raw, item)
        return build(Config, raw, "")
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}" if path else str(err)) from None


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])
