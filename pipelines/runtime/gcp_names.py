"""Google Cloud naming rules, checked locally so a typo fails in milliseconds, not after minutes.

Beam only warns about a malformed `--temp_location` and then looks for a default bucket over
the network (two minutes of retries offline, then a traceback); a bad project ID surfaces as
a traceback from `Pipeline()`. These checks run first. Each returns None for a valid name or
the reason it is not valid (the caller names the option), so they are pure and easy to test.

Rules follow Google's documentation:
- project IDs: 6-30 characters, lowercase letters, digits and hyphens, starting with a letter,
  not ending with a hyphen; legacy domain-scoped IDs look like `example.com:my-project`;
- bucket names: 3-63 characters of lowercase letters, digits, `-`, `_` and `.`, starting and
  ending with a letter or digit; names with dots may be up to 222 characters with every
  dot-separated part at most 63; not an IP address; no `goog` prefix; no "google";
- regions `us-central1`, zones `us-central1-a`; machine types `g2-standard-8`, `custom-4-16384`.
"""

from __future__ import annotations

import ipaddress
import re

_PROJECT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+")
_BUCKET_CHARS = re.compile(r"[a-z0-9._-]+")
_REGION = re.compile(r"[a-z]+-[a-z]+[0-9]{1,2}")
_ZONE = re.compile(r"[a-z]+-[a-z]+[0-9]{1,2}-[a-z]")
_MACHINE_TYPE = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)+")


def project_id_problem(project: str) -> str | None:
    """Why `project` is not a Google Cloud project ID, or None."""
    if project.isdigit():
        return "this is a project number; give the project ID"
    domain, sep, name = project.rpartition(":")
    if sep and not _DOMAIN.fullmatch(domain):
        return f"{domain!r} is not a domain (domain-scoped IDs look like example.com:my-project)"
    if not _PROJECT.fullmatch(name):
        return ("a project ID is 6-30 lowercase letters, digits or hyphens, starts with a "
                "letter and does not end with a hyphen (the ID, not the project's name)")
    return None


def bucket_problem(bucket: str) -> str | None:
    """Why `bucket` is not a valid Cloud Storage bucket name, or None."""
    if not bucket:
        return "no bucket name"
    if not _BUCKET_CHARS.fullmatch(bucket):
        return (f"bucket {bucket!r} may only contain lowercase letters, digits, '-', '_' "
                "and '.'")
    if not (bucket[0].isalnum() and bucket[-1].isalnum()):
        return f"bucket {bucket!r} must start and end with a letter or digit"
    if "." in bucket:
        if not 3 <= len(bucket) <= 222:
            return f"bucket {bucket!r} must be 3-222 characters (names with dots)"
        if any(not part or len(part) > 63 for part in bucket.split(".")):
            return f"bucket {bucket!r}: every dot-separated part must be 1-63 characters"
        try:
            ipaddress.IPv4Address(bucket)
        except ValueError:
            pass
        else:
            return f"bucket {bucket!r} must not be an IP address"
    elif not 3 <= len(bucket) <= 63:
        return f"bucket {bucket!r} must be 3-63 characters"
    if bucket.startswith("goog"):
        return f"bucket {bucket!r} must not start with 'goog'"
    if "google" in bucket or "g00gle" in bucket:
        return f"bucket {bucket!r} must not contain 'google'"
    return None


def gcs_location_problem(location: str, *, need_path: bool) -> str | None:
    """Why `location` is not `gs://BUCKET/PATH` with a valid bucket, or None.

    `need_path`: a bucket root is refused (our outputs and cache put a staging prefix beside
    their path, which must stay in the same bucket). Without it, `gs://BUCKET/` is allowed
    (Dataflow's temp and staging files), but not `gs://BUCKET`, which Beam discards before
    looking for a default bucket over the network.
    """
    if not location.startswith("gs://"):
        return "must be a gs://BUCKET/PATH location on Dataflow"
    bucket, slash, path = location[len("gs://"):].partition("/")
    problem = bucket_problem(bucket)
    if problem:
        return problem
    if need_path and not path.strip("/"):
        return f"give a path inside the bucket, e.g. gs://{bucket}/out"
    if not slash:
        return f"write gs://{bucket}/ or a path such as gs://{bucket}/tmp"
    if "\n" in path or "\r" in path:
        return "the path must not contain line breaks"
    return None


def region_problem(region: str) -> str | None:
    if _REGION.fullmatch(region):
        return None
    return "a region looks like us-central1 or europe-west4"


def zone_problem(zone: str) -> str | None:
    if _ZONE.fullmatch(zone):
        return None
    return "a zone looks like us-central1-a"


def machine_type_problem(machine_type: str) -> str | None:
    if _MACHINE_TYPE.fullmatch(machine_type):
        return None
    return "a machine type looks like g2-standard-8, n1-standard-4 or custom-8-32768"


def accelerator_problem(spec: str) -> str | None:
    """Why `spec` is not `type:NAME;count:N[;install-nvidia-driver...]`, or None."""
    fields = {}
    for part in spec.split(";"):
        key, _, value = part.strip().partition(":")
        fields[key] = value
    if not fields.get("type"):
        return "an accelerator looks like 'type:nvidia-l4;count:1;install-nvidia-driver'"
    count = fields.get("count")
    if count is not None and not (count.isdigit() and int(count) > 0):
        return f"count must be a positive integer, got {count!r}"
    return None
