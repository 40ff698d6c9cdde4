"""Bandit routing: Thompson sampling across the champion and its challengers.

Each model version is an arm with a Beta-Bernoulli posterior over its reward rate; a reward is a
late label's verdict on a served prediction (1 = the prediction was right at the decision
threshold, `rewards_from_labels`). Rewards arrive in windows (the monitoring DAG's hours), so the
state remembers which windows it has applied and a rerun never counts one twice.

- `choose(rng)`: with probability floor x (active arms) a uniformly chosen active arm
  (exploration never stops), else the arm whose posterior draw is highest (Thompson sampling).
  An arm's traffic share is therefore floor + (1 - n x floor) x P(arm is best).
- `shares()`: those shares (P(best) by Monte Carlo with a fixed seed, so the same state gives the
  same shares), for the service, `/metrics`, the `bandit_shares` table and a Vertex AI traffic
  split (`vertex_traffic_split`, `update_endpoint_request`).
- The guard: a challenger whose posterior probability of being worse than the champion exceeds
  `guard_probability`, once it has `guard_min_rewards` rewards, is stopped (share 0, recorded
  with the evidence). P(worse) is exact (Beta integer parameters; Miller's closed form).

The state is JSON (`to_json` / `from_json`, `save` / `load` through ml.storage).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re

import numpy as np
import pyarrow as pa

FORMAT = 1
MAX_APPLIED = 2000  # window ids remembered for idempotency (about 3 months of hourly windows)

SHARES_SCHEMA = pa.schema([
    ("computed_at", pa.timestamp("us", tz="UTC")),
    ("window_id", pa.string()),
    ("version", pa.string()),
    ("role", pa.string()),
    ("share", pa.float64()),
    ("p_best", pa.float64()),
    ("p_worse_than_champion", pa.float64()),
    ("successes", pa.int64()),
    ("failures", pa.int64()),
    ("stopped", pa.bool_()),
    ("reason", pa.string()),
])


def prob_less(a1: int, b1: int, a2: int, b2: int) -> float:
    """P(X < Y) for X ~ Beta(a1, b1), Y ~ Beta(a2, b2), exact for integer a2 (Evan Miller,
    "Formulas for Bayesian A/B testing"): sum_{i<a2} B(a1+i, b1+b2) / ((b2+i) B(1+i, b2) B(a1, b1))."""
    from scipy.special import betaln

    if int(a2) != a2 or min(a1, b1, a2, b2) <= 0:
        raise ValueError("prob_less needs positive parameters and an integer a2")
    i = np.arange(int(a2), dtype=np.float64)
    logs = betaln(a1 + i, b1 + b2) - np.log(b2 + i) - betaln(1 + i, b2) - betaln(a1, b1)
    top = logs.max()
    return float(min(1.0, max(0.0, math.exp(top) * np.exp(logs - top).sum())))


class Bandit:
    """Thompson-sampling router over `champion` and `challengers` (model versions)."""

    def __init__(self, champion: str, challengers=(), *, floor: float = 0.05, guard_probability: float = 0.99,
                 guard_min_rewards: int = 200, prior: tuple[int, int] = (1, 1), samples: int = 20000, seed: int = 0):
        if not 0.0 <= floor <= 1.0:
            raise ValueError(f"floor must be in [0, 1], not {floor}")
        if not 0.5 < guard_probability <= 1.0:
            raise ValueError(f"guard_probability must be in (0.5, 1], not {guard_probability}")
        if any(int(p) != p or p < 1 for p in prior):
            raise ValueError(f"prior must be two positive integers (Beta pseudo-counts), not {prior}")
        self.champion = champion
        self.floor = float(floor)
        self.guard_probability = float(guard_probability)
        self.guard_min_rewards = int(guard_min_rewards)
        self.prior = (int(prior[0]), int(prior[1]))
        self.samples = int(samples)
        self.seed = int(seed)
        self.arms: dict[str, dict] = {}
        self.applied: list[str] = []
        for version in [champion, *challengers]:
            self.add(version)

    # ------------------------------------------------------------------ arms

    def add(self, version: str) -> None:
        self.arms.setdefault(version, {"successes": 0, "failures": 0, "stopped": None})

    def sync(self, champion: str, challengers=()) -> list[str]:
        """Follow the registry: `champion` and `challengers` become the arms (posteriors of
        versions that stay are kept, new ones start from the prior); return the dropped ones."""
        wanted = [champion, *[c for c in challengers if c != champion]]
        dropped = [v for v in self.arms if v not in wanted]
        for version in dropped:
            del self.arms[version]
        for version in wanted:
            self.add(version)
        self.champion = champion
        self.arms[champion]["stopped"] = None  # the champion always serves
        return dropped

    def active(self) -> list[str]:
        return [v for v, arm in self.arms.items() if arm["stopped"] is None]

    def posterior(self, version: str) -> tuple[int, int]:
        arm = self.arms[version]
        return self.prior[0] + arm["successes"], self.prior[1] + arm["failures"]

    def rewards(self, version: str) -> int:
        return self.arms[version]["successes"] + self.arms[version]["failures"]

    def _floor(self, n: int) -> float:
        return min(self.floor, 1.0 / n) if n else 0.0

    # ------------------------------------------------------------------ routing

    def choose(self, rng: np.random.Generator) -> str:
        """The version to serve one request."""
        active = self.active()
        if len(active) == 1:
            return active[0]
        if rng.random() < self._floor(len(active)) * len(active):
            return active[int(rng.integers(len(active)))]
        draws = [rng.beta(*self.posterior(v)) for v in active]
        return active[int(np.argmax(draws))]

    def p_best(self) -> dict[str, float]:
        """P(each active arm has the highest reward rate), by Monte Carlo with the state's seed."""
        active = self.active()
        if len(active) == 1:
            return {active[0]: 1.0}
        rng = np.random.default_rng(self.seed)
        draws = np.column_stack([rng.beta(*self.posterior(v), size=self.samples) for v in active])
        wins = np.bincount(np.argmax(draws, axis=1), minlength=len(active)) / self.samples
        return {v: float(w) for v, w in zip(active, wins, strict=True)}

    def shares(self) -> dict[str, float]:
        """Traffic share per version (what `choose` does on average); stopped versions get 0."""
        best = self.p_best()
        floor = self._floor(len(best))
        out = {v: 0.0 for v in self.arms}
        for version, p in best.items():
            out[version] = floor + (1.0 - floor * len(best)) * p
        return out

    # ------------------------------------------------------------------ learning

    def p_worse(self, version: str) -> float:
        """Posterior probability that `version`'s reward rate is below the champion's."""
        return prob_less(*self.posterior(version), *self.posterior(self.champion))

    def update(self, version: str, reward, count: int = 1) -> dict | None:
        """Record `count` rewards (1/True = right, 0/False = wrong) for `version`; then guard it.
        Returns the stop record if the guard stopped it now."""
        return self.update_counts(version, successes=count if reward else 0, failures=0 if reward else count)

    def update_counts(self, version: str, *, successes: int, failures: int, guard: bool = True) -> dict | None:
        if version not in self.arms:
            raise KeyError(f"{version} is not an arm of this bandit ({sorted(self.arms)})")
        if successes < 0 or failures < 0:
            raise ValueError("reward counts must be >= 0")
        self.arms[version]["successes"] += int(successes)
        self.arms[version]["failures"] += int(failures)
        return self.guard(version) if guard else None

    def guard(self, version: str) -> dict | None:
        """Stop `version` if it is clearly worse than the champion; the stop record or None."""
        arm = self.arms[version]
        if version == self.champion or arm["stopped"] is not None or self.rewards(version) < self.guard_min_rewards:
            return None
        p = self.p_worse(version)
        if p <= self.guard_probability:
            return None
        arm["stopped"] = {"p_worse": p, "rewards": self.rewards(version),
                          "reason": f"P(worse than {self.champion}) = {p:.4f} > {self.guard_probability} after "
                                    f"{self.rewards(version)} rewards"}
        return arm["stopped"]

    def apply_window(self, window_id: str, rewards: dict[str, tuple[int, int]]) -> bool:
        """Apply one window's {version: (successes, failures)} once; False if already applied.
        Versions that are not arms (e.g. an old champion still in the log) are ignored."""
        if window_id in self.applied:
            return False
        for version, (successes, failures) in sorted(rewards.items()):
            if version in self.arms:
                self.update_counts(version, successes=successes, failures=failures, guard=False)
        for version in list(self.arms):  # guarded once every arm, the champion too, has its rewards
            self.guard(version)
        self.applied = [*self.applied, window_id][-MAX_APPLIED:]
        return True

    # ------------------------------------------------------------------ state

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "champion": self.champion, "floor": self.floor,
                           "guard_probability": self.guard_probability, "guard_min_rewards": self.guard_min_rewards,
                           "prior": list(self.prior), "samples": self.samples, "seed": self.seed,
                           "arms": self.arms, "applied": self.applied}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Bandit:
        state = json.loads(text)
        if state.get("format") != FORMAT:
            raise ValueError(f"unknown bandit state format {state.get('format')!r}")
        bandit = cls(state["champion"], floor=state["floor"], guard_probability=state["guard_probability"],
                     guard_min_rewards=state["guard_min_rewards"], prior=tuple(state["prior"]),
                     samples=state["samples"], seed=state["seed"])
        bandit.arms = {v: dict(arm) for v, arm in state["arms"].items()}
        bandit.applied = list(state["applied"])
        return bandit

    def save(self, uri: str) -> str:
        from ml import storage

        return storage.write_text(uri, self.to_json() + "\n")

    @classmethod
    def load(cls, uri: str) -> Bandit | None:
        """The state stored at `uri`, or None if there is none yet."""
        from ml import storage

        return cls.from_json(storage.read_text(uri)) if storage.exists(uri) else None

    def share_rows(self, *, window_id: str, at: dt.datetime) -> pa.Table:
        """One `bandit_shares` row per version."""
        shares, best = self.shares(), self.p_best()
        rows = []
        for version, arm in self.arms.items():
            stopped = arm["stopped"]
            rows.append({"computed_at": at, "window_id": window_id, "version": version,
                         "role": "champion" if version == self.champion else "challenger",
                         "share": shares[version], "p_best": best.get(version, 0.0),
                         "p_worse_than_champion": None if version == self.champion else self.p_worse(version),
                         "successes": arm["successes"], "failures": arm["failures"],
                         "stopped": stopped is not None, "reason": stopped["reason"] if stopped else None})
        return pa.Table.from_pylist(rows, schema=SHARES_SCHEMA)


def parse_versions(value) -> list[str]:
    """Challenger versions from the profile: a list, or a comma-separated string ('' or None: none)."""
    items = value.split(",") if isinstance(value, str) else (value or [])
    return [str(v).strip() for v in items if str(v).strip()]


def default_state_uri(bucket: str) -> str:
    """Where the monitoring DAG keeps the bandit's state unless `serving.bandit.state_uri` says otherwise."""
    from ml import storage

    return storage.join(bucket, "serving", "bandit.json")


class ThompsonBandit:
    """The service's tail router (`ml.serving.routing`): `choose(versions)` per instance by
    Thompson sampling on the posterior the monitoring DAG learns from late labels (the state at
    `state_uri`, re-read every `reload_s`; without one, the prior). The loaded versions, champion
    first, are the arms; a version the guard stopped is never chosen. The service never writes
    the state: rewards only come from labels."""

    def __init__(self, state_uri: str = "", reload_s: float = 30.0, seed: int | None = None, **options):
        self.state_uri, self.reload_s = state_uri, float(reload_s)
        self.options = {k: v for k, v in options.items()
                        if k in ("floor", "guard_probability", "guard_min_rewards", "samples")}
        self._rng = np.random.default_rng(seed)
        self._bandit: Bandit | None = None
        self._loaded_at = -math.inf
        self._shares: dict[str, float] = {}

    def _current(self, versions: list[str]) -> Bandit:
        import time

        now = time.monotonic()
        if self._bandit is None or now - self._loaded_at >= self.reload_s:
            stored = Bandit.load(self.state_uri) if self.state_uri else None
            self._bandit = stored or self._bandit or Bandit(versions[0], versions[1:], **self.options)
            self._loaded_at, self._shares = now, {}
        if self._bandit.champion != versions[0] or list(self._bandit.arms) != versions:
            self._bandit.sync(versions[0], versions[1:])
            self._shares = {}
        return self._bandit

    def choose(self, versions) -> str:
        return self._current(list(versions)).choose(self._rng)

    def shares(self) -> dict[str, float]:
        if self._bandit is None:
            return {}
        if not self._shares:
            self._shares = self._bandit.shares()
        return dict(self._shares)


def rewards_from_labels(versions, scores, labels, threshold: float) -> dict[str, tuple[int, int]]:
    """{version: (successes, failures)}: a served prediction is right when (score >= threshold)
    equals its late label."""
    versions = np.asarray(versions, dtype=object)
    right = (np.asarray(scores, dtype=np.float64) >= threshold) == np.asarray(labels).astype(bool)
    out = {}
    for version in sorted(set(versions.tolist())):
        mask = versions == version
        wins = int(right[mask].sum())
        out[str(version)] = (wins, int(mask.sum()) - wins)
    return out


# ------------------------------------------------------------------ Vertex AI endpoint traffic split


def traffic_percentages(shares: dict[str, float]) -> dict[str, int]:
    """Shares → integer percentages summing to exactly 100 (largest remainder: each share is
    rounded down, the leftover points go to the largest remainders). A version with a share
    keeps at least floor(100 x share) points, so a 5 % exploration floor stays 5 %."""
    positive = {v: s for v, s in shares.items() if s > 0}
    total = sum(positive.values())
    if total <= 0:
        raise ValueError("no version has a positive share")
    exact = {v: 100.0 * s / total for v, s in positive.items()}
    points = {v: math.floor(x) for v, x in exact.items()}
    left = 100 - sum(points.values())
    for version in sorted(exact, key=lambda v: (-(exact[v] - points[v]), v))[:left]:
        points[version] += 1
    return {v: points.get(v, 0) for v in shares}


def deployed_model_id(version: str) -> str:
    """The DeployedModel id we give a registry version on the endpoint: its number ('v0003' → '3');
    Vertex AI wants 1-10 digits."""
    match = re.fullmatch(r"v0*(\d{1,10})", version)
    if not match:
        raise ValueError(f"not a registry version id: {version!r}")
    return match.group(1)


def vertex_traffic_split(shares: dict[str, float], deployed_ids: dict[str, str] | None = None) -> dict[str, int]:
    """Endpoint.traffic_split: {DeployedModel id: percent}, summing to 100 (versions at 0 % left out,
    as Vertex AI reads an absent id). `deployed_ids` maps a
    version to its DeployedModel id (default `deployed_model_id`)."""
    ids = deployed_ids or {}
    return {ids.get(v) or deployed_model_id(v): p for v, p in traffic_percentages(shares).items() if p > 0}


def deployed_model(*, version: str, model: str, machine_type: str = "n1-standard-2", min_replicas: int = 1,
                   max_replicas: int = 2):
    """aiplatform_v1 DeployedModel for one registry version (`model`: the Vertex model resource
    name; the version is addressed by its alias, as `ml.vertex_registry` mirrors it)."""
    from google.cloud.aiplatform_v1.types import DedicatedResources, DeployedModel, MachineSpec

    return DeployedModel(
        id=deployed_model_id(version), model=f"{model}@{version}", display_name=f"prodml-{version}",
        dedicated_resources=DedicatedResources(machine_spec=MachineSpec(machine_type=machine_type),
                                               min_replica_count=min_replicas, max_replica_count=max_replicas))


def update_endpoint_request(*, endpoint: str, shares: dict[str, float], deployed_ids: dict[str, str] | None = None):
    """aiplatform_v1 UpdateEndpointRequest that sets the endpoint's traffic split to the bandit's
    shares (only `traffic_split` is updated)."""
    from google.cloud.aiplatform_v1.types import Endpoint, UpdateEndpointRequest
    from google.protobuf.field_mask_pb2 import FieldMask

    return UpdateEndpointRequest(endpoint=Endpoint(name=endpoint, traffic_split=vertex_traffic_split(shares, deployed_ids)),
                                 update_mask=FieldMask(paths=["traffic_split"]))
