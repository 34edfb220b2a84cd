"""Moved to `pipelines.transforms.dataset_input`; this old path keeps working for one release."""

import warnings

from pipelines.transforms.dataset_input import *  # noqa: F403

warnings.warn("pipelines.dataset_input moved to pipelines.transforms.dataset_input; the old path "
              "goes away in the next release", DeprecationWarning, stacklevel=2)
