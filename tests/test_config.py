import dataclasses
import datetime as dt
import subprocess
import sys

import pytest

from pipeline.config import Config, load_config
from pipeline.confload import to_dict
from pipeline.errors import ConfigError

LOCAL = "conf/local.yaml"


def write(tmp_path, text: str) -> str:
    path = tmp_path / "env.yaml"
    path.write_text(text)
    return str(path)


def test_local_yaml_is_the_embedded_default():
    assert load_config(LOCAL) == Config()


def test_example_cluster_conf_loads():
    cfg = load_config("conf/cluster.example.yaml")
    assert cfg.storage.root.startswith("s3://")
    assert cfg.table_path("samples") == cfg.storage.root.rstrip("/") + "/samples"


def test_file_lists_only_what_differs(tmp_path):
    cfg = load_config(write(tmp_path, "storage: {root: /lake, database: ranking}\nlabels: {click_window_hours: 12}\n"))
    assert cfg.storage.database == "ranking"
    assert cfg.labels.click_window_hours == 12
    assert cfg.labels.attribution_window_days == 3
    assert cfg.table_path("scores") == "/lake/scores"
    assert cfg.raw_path("clicks") == "/lake/raw/clicks"
    assert cfg.truth_path == "/lake/truth"


def test_explicit_table_path_wins():
    cfg = load_config(None, ["tables.samples=s3://b/samples_v2"])
    assert cfg.table_path("samples") == "s3://b/samples_v2"


def test_overrides_convert_to_the_key_type():
    cfg = load_config(LOCAL, [
        "synth.days=3", "synth.ctr=0.2", "synth.gzip=true", "synth.start_date=2026-02-28",
        "storage.database=123", "features.numeric=[price]", "raw.format=parquet",
        "spark.conf.spark.sql.shuffle.partitions=16",
    ])
    assert cfg.synth.days == 3 and cfg.synth.ctr == 0.2 and cfg.synth.gzip is True
    assert cfg.synth.start_date == dt.date(2026, 2, 28)
    assert cfg.storage.database == "123"  # string keys take the text as it is
    assert cfg.features.numeric == ("price",)
    assert cfg.raw.format == "parquet"
    assert cfg.spark.conf["spark.sql.shuffle.partitions"] == "16"
    assert cfg.spark.conf["spark.ui.showConsoleProgress"] == "false"  # other entries kept


def test_numbers_in_mappings_stay_numbers():
    cfg = load_config(None, ["training.loss_weights.ctcvr=2", "features.hash_buckets.item_id=64",
                             "fusion.linear.p_ctr=0.5"])
    assert dict(cfg.training.loss_weights) == {"ctcvr": 2.0} and type(cfg.training.loss_weights["ctcvr"]) is float
    assert dict(cfg.features.hash_buckets) == {"item_id": 64}
    assert cfg.fusion.linear["p_ctr"] == 0.5 and cfg.fusion.linear["expected_value"] == 1.0  # default kept
    for item, message in [("training.loss_weights.ctcvr=high", "training.loss_weights.ctcvr: expected a number, got 'high'"),
                          ("features.hash_buckets.item_id=many", "features.hash_buckets.item_id: expected an integer"),
                          ("features.hash_buckets.item_id=0", "features.hash_buckets.item_id: expected a positive integer")]:
        with pytest.raises(ConfigError, match=message):
            load_config(None, [item])


def test_config_is_frozen():
    cfg = Config()
    with pytest.raises(Exception):
        cfg.storage.root = "/elsewhere"
    with pytest.raises(TypeError):
        cfg.spark.conf["x"] = "y"


def test_to_dict_round_trips(tmp_path):
    import yaml

    cfg = load_config(None, ["synth.days=9", "spark.conf.a.b=1"])
    assert load_config(write(tmp_path, yaml.safe_dump(to_dict(cfg)))) == cfg


@pytest.mark.parametrize("text, named", [
    ("storage: {rooot: x}\n", "storage.rooot"),
    ("sparks: {}\n", "sparks"),
    ("synth: {dirt: {spam: 0.1}}\n", "synth.dirt.spam"),
    ("synth: {days: three}\n", "synth.days"),
    ("synth: {ctr: yes}\n", "synth.ctr"),
    ("features: {numeric: price}\n", "features.numeric"),
    ("synth: {start_date: 2026-02-30}\n", "synth.start_date"),
    ("labels: {click_window_hours: 0}\n", "labels.click_window_hours"),
    ("raw: {format: csv}\n", "raw.format"),
    ("synth: {dirt: {malformed: 0.9}}\n", "synth.dirt.malformed"),
    ("spark: {conf: [a, b]}\n", "spark.conf"),
    ("storage: [1]\n", "storage"),
    ("training: {backend: mpi}\n", "training.backend"),
])
def test_bad_file_names_the_key(tmp_path, text, named):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert named in str(err.value) and path in str(err.value)


@pytest.mark.parametrize("override, named", [
    ("synth.dayz=3", "synth.dayz"),
    ("synth.days=x", "synth.days"),
    ("storage.root.deeper=1", "storage.root.deeper"),
    ("labels.click_window_hours=-1", "labels.click_window_hours"),
    ("synth.start_date=2026-13-01", "synth.start_date"),
    ("no-equals-sign", "no-equals-sign"),
    ("training.backend=mpi", "training.backend"),
])
def test_bad_override_names_the_key(override, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(LOCAL, [override])


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="conf file not found: .*nowhere.yaml"):
        load_config(str(tmp_path / "nowhere.yaml"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "storage: {root: [\n"))


def test_cli_reports_a_bad_conf_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "show-config", "--conf", LOCAL, "--set", "synth.dayz=1"],
        capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "pipeline show-config: error: conf/local.yaml: unknown key 'synth.dayz' in --set synth.dayz=1"]


def test_cli_shows_the_effective_config():
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "show-config", "--set", "synth.days=2"],
                            capture_output=True, text=True, check=True)
    assert "days: 2" in result.stdout


def _schema_keys(section, prefix=""):
    """Dotted keys of the conf schema down to its settings (a mapping setting such as spark.conf is one key)."""
    keys = []
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        name = f"{prefix}{f.name}"
        keys += _schema_keys(value, f"{name}.") if dataclasses.is_dataclass(value) else [name]
    return keys


def test_local_yaml_spells_out_every_key_of_the_schema():
    """conf/local.yaml is the configuration reference: every key, with its default and a comment."""
    import yaml

    with open(LOCAL, encoding="utf-8") as fh:
        spelled = yaml.safe_load(fh)
    missing = []
    for key in _schema_keys(Config()):
        node = spelled
        for part in key.split("."):
            node = node.get(part, KeyError) if isinstance(node, dict) else KeyError
        if node is KeyError:
            missing.append(key)
    assert missing == []  # (unknown keys are load errors: test_local_yaml_is_the_embedded_default)


def test_configuration_doc_block_names_every_section():
    with open("docs/configuration.md", encoding="utf-8") as fh:
        page = fh.read()
    block = page.split("# Configuration", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    sections = {line.split(":", 1)[0] for line in block.splitlines() if line and not line.startswith(" ")}
    assert sections == set(to_dict(Config()))
