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
