import pytest

from ml import config


def test_local_profile_is_default_and_expands_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("PRODML_PROFILE", raising=False)
    monkeypatch.setenv("PRODML_DATA", str(tmp_path))
    cfg = config.load()
    assert cfg["profile"] == "local"
    assert cfg["storage"]["landing"] == f"file://{tmp_path}/bucket/landing"
    assert cfg["warehouse"] == {"kind": "duckdb", "path": f"{tmp_path}/warehouse.duckdb", "dataset": "prodml"}
    assert cfg["beam"]["runner"] == "FnApiRunner"  # DirectRunner would try to download Prism


def test_gcp_profile_uses_google_services(monkeypatch):
    monkeypatch.setenv("PRODML_PROFILE", "gcp")
    monkeypatch.setenv("PRODML_BUCKET", "my-bucket")
    cfg = config.load()
    assert cfg["storage"]["landing"] == "gs://my-bucket/landing"
    assert cfg["beam"]["runner"] == "DataflowRunner"
    assert cfg["warehouse"]["kind"] == "bigquery"
    assert cfg["training"]["kind"] == "vertex"


def test_both_profiles_define_the_same_sections():
    local, gcp = config.load("local"), config.load("gcp")
    assert set(local) - {"project", "region", "gcp_conn_id"} == set(gcp) - {"project", "region", "gcp_conn_id"}
    for section in ("storage", "training", "evaluation", "gate", "beam"):
        assert set(local[section]) - {"options"} <= set(gcp[section]) | {"options"}, section


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(config.ConfigError, match="unknown profile 'nope'.*known: gcp, local"):
        config.load("nope")


def test_missing_variable_without_default_is_named(monkeypatch, tmp_path):
    with pytest.raises(config.ConfigError, match=r"\$\{UNSET_VAR_X\}"):
        config._expand({"a": "${UNSET_VAR_X}"}, {}, "cfg")


def test_a_profile_file_anywhere_gets_its_own_data_root(monkeypatch, tmp_path):
    from ml import config

    (tmp_path / "census.yaml").write_text(
        "profile: census\nschema: census_schema.yaml\nstorage:\n  bucket: file://${PRODML_DATA}/bucket\n"
        "registry:\n  kind: local\n  root: ${PRODML_DATA}/registry\n")
    (tmp_path / "census_schema.yaml").write_text("features: []\n")
    monkeypatch.delenv("PRODML_DATA", raising=False)
    monkeypatch.setenv("PRODML_CONFIG", str(tmp_path / "census.yaml"))
    loaded = config.load()
    assert loaded["profile"] == "census" and loaded["profile_path"] == str(tmp_path / "census.yaml")
    assert loaded["schema_path"] == str(tmp_path / "census_schema.yaml")  # beside the profile file
    own = config.PROJECT_ROOT / ".prodml" / "census"
    assert loaded["registry"]["root"] == f"{own}/registry"
    local = config.load("local")  # a named profile still comes from include/config
    assert local["registry"]["root"] == f"{config.PROJECT_ROOT / '.prodml'}/registry"
    monkeypatch.setenv("PRODML_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(config.ConfigError, match="PRODML_CONFIG=.*missing.yaml: no such profile file"):
        config.load()


def test_a_profile_extends_another_and_says_only_what_differs(monkeypatch, tmp_path):
    (tmp_path / "schema.yaml").write_text("features: []\n")
    (tmp_path / "mine.yaml").write_text(
        "profile: mine\nextends: local\nschema: schema.yaml\n"
        "gate: {min_auc: 0.6}\n"
        "drift:\n  features: !replace\n    colour: {monitor: false}\n"
        "monitoring: {input_drift: {drift: {features: null}}}\n")
    monkeypatch.delenv("PRODML_DATA", raising=False)
    monkeypatch.setenv("PRODML_CONFIG", str(tmp_path / "mine.yaml"))
    mine, local = config.load(), config.load("local")
    assert mine["profile"] == "mine" and mine["schema_path"] == str(tmp_path / "schema.yaml")
    assert mine["gate"]["min_auc"] == 0.6 and local["gate"]["min_auc"] != 0.6
    assert mine["gate"]["max_auc_drop"] == local["gate"]["max_auc_drop"]  # merged key by key
    assert mine["drift"]["features"] == {"colour": {"monitor": False}}  # replaced, not merged
    assert mine["drift"]["policy"] == local["drift"]["policy"]
    assert mine["monitoring"]["input_drift"]["drift"]["features"] is None
    assert mine["monitoring"]["input_drift"]["min_rows"] == local["monitoring"]["input_drift"]["min_rows"]
    assert mine["registry"]["root"] == f"{config.PROJECT_ROOT / '.prodml' / 'mine'}/registry"  # its own root


def test_extends_names_a_profile_or_a_file_and_may_not_loop(monkeypatch, tmp_path):
    (tmp_path / "a.yaml").write_text("schema: s.yaml\nextends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    monkeypatch.setenv("PRODML_CONFIG", str(tmp_path / "a.yaml"))
    with pytest.raises(config.ConfigError, match="`extends` loops"):
        config.load()
    (tmp_path / "a.yaml").write_text("schema: s.yaml\nextends: nowhere.yaml\n")
    with pytest.raises(config.ConfigError, match="extends 'nowhere.yaml': no such file"):
        config.load()
    (tmp_path / "a.yaml").write_text("schema: s.yaml\nextends: nope\n")
    with pytest.raises(config.ConfigError, match="unknown profile 'nope'"):
        config.load()
