"""Moved to `pipelines.transforms.near_dup`; this old path keeps working for one release."""

import warnings

from pipelines.transforms.near_dup import *  # noqa: F403

warnings.warn("pipelines.near_dup moved to pipelines.transforms.near_dup; the old path goes "
              "away in the next release", DeprecationWarning, stacklevel=2)
