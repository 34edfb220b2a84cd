"""Moved to `pipelines.transforms.rules`; this old path keeps working for one release."""

import warnings

from pipelines.transforms.rules import *  # noqa: F403

warnings.warn("pipelines.rules moved to pipelines.transforms.rules; the old path goes "
              "away in the next release", DeprecationWarning, stacklevel=2)
