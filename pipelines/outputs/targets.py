"""The sizes a recipe was asked for, what it delivered, and why it fell short (manifest `targets`).

A run may end below its target and still be a valid run: Self-Instruct and Ensemble-Instruct
stop after `max_prompts` prompts whatever the pool size, and Explore-Instruct's and #InsTag's
samples cannot be larger than the pool they draw from. The exit status stays 0 (unless the CLI
is run with `--strict-targets`), so the shortfall must be impossible to miss elsewhere: every
recipe with a target writes `targets: {<config key>: {wanted, got, met, why}}` into the
manifest, and the terminal summary, the dataset card and report.html print one line per
target from it.

The names are the config keys that set the targets, so a reader knows what to change. `why`
explains the outcome from the run's own counts (prompts, rejections by cause). The
bootstrap recipes count per target in namespace `instructbeam/target/<name>` (Ensemble-Instruct's
two types share their stage names, so the stage table cannot tell them apart); the sampling
recipes need only the stage table, and their target functions live with them
(`pipelines/recipes/<name>/targets.py`): this module knows no recipe's config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines.generators.handler import NAMESPACE

TARGET_PREFIX = f"{NAMESPACE}/target/"
SELF_INSTRUCT = "self_instruct.num_instructions"

# Counter names of a bootstrap target (counted by pipelines.transforms.bootstrap's lanes, per
# decided prompt: prompts sent beyond the stop are never decided and never counted here).
PROMPTS = "prompts"  # instruction prompts decided
ANSWERS = "answers"  # decided prompts that came back with an answer (the rest failed)
CANDIDATES = "candidates"  # parsed instructions that passed the heuristics
DROPPED = "dropped"  # parsed instructions the heuristics rejected
NOVEL = "novel"  # candidates accepted into a lane's pool
NOT_NOVEL = "not_novel"  # candidates rejected by the ROUGE-L rule
LANE_DUPLICATES = "lane_duplicates"  # accepted by a lane, rejected by the cross-lane pass
STOPPED_FAILING = "stopped_failing"  # lanes that stopped because their generator kept failing
STOPPED_STALLED = "stopped_stalled"  # lanes that stopped because nothing new was accepted

Target = dict[str, Any]  # {"wanted": int, "got": int, "met": bool, "why": str}


def ensemble_target(type_key: str) -> str:
    """`type_key`: "type_a" or "type_b", as in the config."""
    return f"ensemble_instruct.{type_key}.num_instructions"


def target_counters(counters: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    return {ns[len(TARGET_PREFIX):]: dict(values) for ns, values in counters.items()
            if ns.startswith(TARGET_PREFIX)}


def target(wanted: int, got: int, why: str) -> Target:
    """A target's manifest entry; met when at least `wanted` came."""
    return {"wanted": wanted, "got": got, "met": got >= wanted, "why": why}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def bootstrap_target(wanted: int, max_prompts: int, c: Mapping[str, int]) -> Target:
    """A pool grown prompt by prompt until `wanted` instructions are accepted, the prompt
    budget is spent, or the generator kept failing.

    `why` names the limit that stopped a missed target and the main loss when one dominates,
    and gives the counts.
    """
    duplicates = c.get(LANE_DUPLICATES, 0)
    got, prompts = c.get(NOVEL, 0) - duplicates, c.get(PROMPTS, 0)
    failed = prompts - c.get(ANSWERS, 0)
    sent = f"after {_plural(prompts, 'prompt')}" + (f", {failed} failed" if failed else "")
    if duplicates:
        sent += f"; {duplicates} repeated across lanes"
    if got >= wanted:
        return target(wanted, got, f"reached {sent}")
    if c.get(STOPPED_FAILING, 0):
        limit = "stopped: the generator failed every recent prompt"
    elif c.get(STOPPED_STALLED, 0):
        limit = ("stalled: the generator's recent answers added nothing new "
                 "(stall_prompts reached)")
    elif prompts >= max_prompts:
        limit = f"max_prompts={max_prompts} reached"
    else:  # every lane reached its share; the cross-lane pass removed repeats
        limit = "the lanes reached their shares"
    candidates, not_novel, dropped = c.get(CANDIDATES, 0), c.get(NOT_NOVEL, 0), c.get(DROPPED, 0)
    if failed and 2 * failed >= prompts:
        cause = "; most generator requests failed"
    elif not_novel and not_novel >= got:
        cause = "; too few novel answers"
    elif dropped and dropped >= candidates:
        cause = "; most instructions failed the heuristics"
    else:
        cause = ""
    return target(wanted, got, f"{limit} {sent}{cause} "
                               f"({_plural(candidates, 'candidate instruction')}, {not_novel} "
                               f"not novel; {dropped} dropped by the heuristics)")


# For the sampling recipes' targets, which read the stage table (their `targets.py`).

def stage(stages: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """A stage's row of the manifest's stage table; empty when the stage did not run."""
    return stages.get(name, {})


def rejected(stages: Mapping[str, Any], name: str, reason: str | None = None) -> int:
    """Rows a stage rejected for `reason`, or for any reason."""
    found = stage(stages, name).get("rejected", {})
    return found.get(reason, 0) if reason else sum(found.values())


def missed(manifest: Mapping[str, Any]) -> dict[str, Target]:
    return {name: t for name, t in manifest.get("targets", {}).items() if not t["met"]}


def outcome(t: Target) -> str:
    """What was asked, what came, and why: "NOT MET, wanted 8, got 5 (max_prompts=8 ...)"."""
    status = "met" if t["met"] else "NOT MET"
    return f"{status}, wanted {t['wanted']}, got {t['got']} ({t['why']})"


def describe(name: str, t: Target) -> str:
    """One line per target, for the terminal summary."""
    return f"{name}: {outcome(t)}"
