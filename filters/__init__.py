"""Pure filter and scoring functions (plus thin Beam wrappers) for instruction data."""
