"""Moved to `pipelines.transforms.novelty`; this old path keeps working for one release."""

import warnings

from pipelines.transforms.novelty import *  # noqa: F403

warnings.warn("pipelines.novelty moved to pipelines.transforms.novelty; the old path goes "
              "away in the next release", DeprecationWarning, stacklevel=2)
