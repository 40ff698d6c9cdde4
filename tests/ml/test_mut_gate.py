"""The gate's model size in MiB (infra validation's tests are not in the mutation run: their
fixture serves models; this one needs none)."""

from __future__ import annotations

from ml import gate


def test_model_size_is_every_file_under_the_model_folder_in_mib(tmp_path):
    (tmp_path / "variables").mkdir()
    (tmp_path / "saved_model.pb").write_bytes(b"x" * 2**20)
    (tmp_path / "variables" / "variables.data").write_bytes(b"x" * 2**19)
    assert gate.model_size_mb(tmp_path) == 1.5
    assert gate.model_size_mb(str(tmp_path)) == 1.5
