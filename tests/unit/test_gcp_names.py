"""Google Cloud naming rules, checked locally (project IDs, buckets, regions, machine types)."""

from __future__ import annotations

import pytest

from pipelines.runtime.gcp_names import (
    accelerator_problem,
    bucket_problem,
    gcs_location_problem,
    machine_type_problem,
    project_id_problem,
    region_problem,
    zone_problem,
)


@pytest.mark.parametrize("project", [
    "my-project", "abcdef", "a" * 30, "proj-123456", "example.com:my-project",
    "google.com:cloud-sdk-123", "a-b-c-d-e-f9"])
def test_valid_project_ids(project):
    assert project_id_problem(project) is None


@pytest.mark.parametrize("project, reason", [
    ("P", "6-30"), ("abcde", "6-30"), ("a" * 31, "6-30"), ("My-Project", "6-30"),
    ("1project", "6-30"), ("my-project-", "6-30"), ("my_project", "6-30"),
    ("my project", "6-30"), ("123456789012", "project number"),
    ("example:my-project", "not a domain"), ("example.com:P", "6-30"),
    (":my-project", "not a domain")])
def test_invalid_project_ids(project, reason):
    assert reason in project_id_problem(project)


@pytest.mark.parametrize("bucket", [
    "abc", "a" * 63, "my-bucket_1", "0bucket9", "data.example.com",
    ".".join(["a" * 63] * 3) + ".abc", "my.bucket", "gogle-data"])
def test_valid_buckets(bucket):
    assert bucket_problem(bucket) is None


@pytest.mark.parametrize("bucket, reason", [
    ("b", "3-63"), ("ab", "3-63"), ("a" * 64, "3-63"), ("My-Bucket", "lowercase"),
    ("-bucket", "start and end"), ("bucket_", "start and end"), ("buc ket", "lowercase"),
    ("a" * 64 + ".com", "1-63"), ("a..b", "1-63"), ("a" * 100 + "." + "b" * 30, "1-63"),
    (".".join(["a" * 60] * 4), "3-222"), ("192.168.5.4", "IP address"),
    ("goog-data", "goog"), ("my-google-data", "google"), ("my-g00gle-x", "google"),
    ("", "no bucket")])
def test_invalid_buckets(bucket, reason):
    assert reason in bucket_problem(bucket)


def test_gcs_locations():
    assert gcs_location_problem("gs://my-bucket/tmp", need_path=False) is None
    assert gcs_location_problem("gs://my-bucket/", need_path=False) is None
    assert gcs_location_problem("gs://my-bucket/out/run1", need_path=True) is None
    assert "3-63" in gcs_location_problem("gs://b/tmp", need_path=False)
    assert "gs://BUCKET/PATH" in gcs_location_problem("/tmp/x", need_path=False)
    assert "gs://BUCKET/PATH" in gcs_location_problem("s3://bucket/x", need_path=False)
    # Beam discards a bucket without '/', then looks for a default bucket over the network
    assert "gs://my-bucket/" in gcs_location_problem("gs://my-bucket", need_path=False)
    assert "path inside" in gcs_location_problem("gs://my-bucket/", need_path=True)
    assert "line breaks" in gcs_location_problem("gs://my-bucket/a\nb", need_path=True)


def test_regions_zones_machine_types():
    for region in ("us-central1", "europe-west4", "northamerica-northeast1", "me-central2"):
        assert region_problem(region) is None
    for region in ("US", "us-central", "us_central1", "us-central1-a", ""):
        assert region_problem(region)
    assert zone_problem("us-central1-a") is None
    assert zone_problem("us-central1") and zone_problem("us-central1-")
    for machine in ("g2-standard-8", "n1-standard-4", "e2-medium", "custom-8-32768",
                    "n2-custom-4-16384-ext", "a2-highgpu-1g"):
        assert machine_type_problem(machine) is None
    for machine in ("G2-standard-8", "g2", "g2-standard-", "g2 standard 8", "-g2-x"):
        assert machine_type_problem(machine)


def test_accelerators():
    assert accelerator_problem("type:nvidia-l4;count:1;install-nvidia-driver") is None
    assert accelerator_problem("type:nvidia-tesla-t4;count:2;install-nvidia-driver:5xx") is None
    assert "type:" in accelerator_problem("count:1;install-nvidia-driver")
    assert "type:" in accelerator_problem("nvidia-l4")
    assert "positive" in accelerator_problem("type:nvidia-l4;count:0")
    assert "positive" in accelerator_problem("type:nvidia-l4;count:one")
