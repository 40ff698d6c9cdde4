"""The emulators the gcp profile's tests run against, and the GCS generation preconditions added to
gcp-storage-emulator (tests/gcp/gcs_emulator.py), checked with the real clients."""

from __future__ import annotations

import os
import uuid

import pytest
import requests
from google.api_core.exceptions import NotFound, NotModified, PreconditionFailed

from tests.gcp import emulators


@pytest.fixture
def bucket(gcs_emulator, gcs_client):
    name = f"b-{uuid.uuid4().hex[:12]}"
    emulators.create_bucket(gcs_emulator, name)
    return gcs_client.bucket(name)


def test_fixtures_set_the_variables_clients_read(gcs_emulator, bq_emulator, gcp_conn_id):
    assert os.environ["STORAGE_EMULATOR_HOST"] == gcs_emulator.url
    assert os.environ["BIGQUERY_EMULATOR_HOST"] == bq_emulator.url
    assert gcp_conn_id == "google_cloud_default"
    assert '"is_anonymous": true' in os.environ["AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT"]


def test_generation_zero_means_only_if_absent(bucket):
    blob = bucket.blob("alias.json")
    blob.upload_from_string(b"v1", if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        bucket.blob("alias.json").upload_from_string(b"v2", if_generation_match=0)
    assert bucket.blob("alias.json").download_as_bytes() == b"v1"


def test_compare_and_swap_on_generation(bucket):
    blob = bucket.blob("aliases.json")
    blob.upload_from_string(b"v1")
    first = blob.generation
    blob.upload_from_string(b"v2", if_generation_match=first)
    second = blob.generation
    assert second > first
    assert blob.metageneration == 1
    with pytest.raises(PreconditionFailed):  # a writer holding the stale generation loses
        bucket.blob("aliases.json").upload_from_string(b"stale", if_generation_match=first)
    with pytest.raises(PreconditionFailed):  # no object at all is generation 0, not a match
        bucket.blob("missing.json").upload_from_string(b"x", if_generation_match=second)
    assert bucket.blob("aliases.json").download_as_bytes() == b"v2"
    bucket.blob("aliases.json").upload_from_string(b"v3", if_generation_not_match=first)
    bucket.blob("aliases.json").upload_from_string(b"v4", if_generation_not_match=0)  # 0: "exists"
    with pytest.raises(PreconditionFailed):
        bucket.blob("nothing.json").upload_from_string(b"v4", if_generation_not_match=0)
    assert bucket.blob("aliases.json").download_as_bytes() == b"v4"


def test_generation_increases_on_every_write(bucket):
    generations = []
    for i in range(20):
        blob = bucket.blob("counter")
        blob.upload_from_string(str(i).encode())
        generations.append(blob.generation)
    assert generations == sorted(set(generations))


def test_resumable_upload_is_checked_at_start_and_at_finalize(bucket):
    blob = bucket.blob("big.bin")
    blob.upload_from_string(b"v1")
    current = blob.generation
    data = os.urandom(600 * 1024)
    chunked = bucket.blob("big.bin", chunk_size=256 * 1024)
    with pytest.raises(PreconditionFailed):
        chunked.upload_from_string(data, if_generation_match=current - 1)
    # Initiated while `current` was live; another writer then replaces the object.
    session = bucket.blob("big.bin").create_resumable_upload_session(if_generation_match=current)
    bucket.blob("big.bin").upload_from_string(b"intruder")
    response = requests.put(session, data=data, headers={"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"})
    assert response.status_code == 412
    assert bucket.blob("big.bin").download_as_bytes() == b"intruder"
    chunked = bucket.blob("big.bin", chunk_size=256 * 1024)
    chunked.reload()
    chunked.upload_from_string(data, if_generation_match=chunked.generation)
    assert bucket.blob("big.bin").download_as_bytes() == data


def test_copy_delete_patch_and_reads_honour_preconditions(bucket):
    source = bucket.blob("src")
    source.upload_from_string(b"s")
    bucket.copy_blob(source, bucket, "dst", if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        bucket.copy_blob(source, bucket, "dst", if_generation_match=0)

    dst = bucket.get_blob("dst")
    with pytest.raises(PreconditionFailed):
        dst.delete(if_generation_match=dst.generation - 1)
    dst.metadata = {"k": "v"}
    dst.patch(if_metageneration_match=1)
    assert dst.metageneration == 2
    with pytest.raises(PreconditionFailed):
        dst.patch(if_metageneration_match=1)

    with pytest.raises(PreconditionFailed):
        bucket.blob("dst").reload(if_generation_match=dst.generation - 1)
    with pytest.raises(NotModified):
        bucket.blob("dst").reload(if_generation_not_match=dst.generation)
    bucket.blob("dst").delete(if_generation_match=dst.generation)
    with pytest.raises(NotFound):
        bucket.blob("dst").reload()


def test_gcs_hook_and_gcsfs_reach_the_emulator(bucket, gcp_conn_id):
    import gcsfs
    from airflow.providers.google.cloud.hooks.gcs import GCSHook

    hook = GCSHook(gcp_conn_id=gcp_conn_id)
    hook.upload(bucket_name=bucket.name, object_name="landing/dt=2026-11-01/_SUCCESS", data=b"")
    assert hook.exists(bucket_name=bucket.name, object_name="landing/dt=2026-11-01/_SUCCESS")
    fs = gcsfs.GCSFileSystem(token="anon", project=emulators.PROJECT)
    fs.pipe(f"{bucket.name}/a/b.txt", b"hello")
    assert fs.cat(f"{bucket.name}/a/b.txt") == b"hello"
    assert sorted(fs.find(bucket.name)) == [f"{bucket.name}/a/b.txt",
                                            f"{bucket.name}/landing/dt=2026-11-01/_SUCCESS"]


def test_bigquery_hook_reaches_the_emulator(bq_emulator, gcp_conn_id):
    from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook

    hook = BigQueryHook(gcp_conn_id=gcp_conn_id)
    job = hook.insert_job(configuration={"query": {"query": "SELECT 40 + 2 AS answer", "useLegacySql": False}},
                          project_id=emulators.PROJECT)
    assert [tuple(row.values()) for row in job.result()] == [(42,)]
    client = hook.get_client(project_id=emulators.PROJECT)
    assert client._connection.API_BASE_URL == bq_emulator.url
