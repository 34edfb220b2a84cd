"""Generator backends, Beam stages per algorithm, config, CLI and report."""
