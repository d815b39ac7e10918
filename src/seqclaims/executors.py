"""Where claims are judged: in the pytest process (and its xdist workers), or on a Ray cluster.

`--claims-executor ray` (the optional extra `seqclaims[ray]`) groups the collected claims by what their
forward passes share, the model and the dataset (`group_key`), and runs each group as one Ray task: one
model per worker, which gets a GPU when the cluster has one. Every task judges its claims exactly as the
local run does (`judge_paths`, through `judging.judge.judge_path`) and returns their results as JSON; the
pytest items then report them, so the report, the ledger comparison and the exit status are the local run's.

Workers read and write the same caches as the controller: the activation cache, the evidence store and
the figure store live under `SEQCLAIMS_CACHE`, which every task receives. On one machine that is the
local cache folder; on a cluster it must be a path every node mounts (NFS, a shared volume).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from threadpoolctl import threadpool_limits

from seqclaims.core.families import checks_dirs, load_families
from seqclaims.errors import InputError
from seqclaims.judging.judge import ClaimResult, judge_path
from seqclaims.lazy import lazy_import
from seqclaims.paths import cache_dir, project_root_set_to

torch = lazy_import("torch")

EXECUTORS = ("local", "ray")
# what a worker's environment must share with the controller's for identical results
FORWARDED_VARIABLES = ("SEQCLAIMS_DEVICE", "SEQCLAIMS_DTYPE", "SEQCLAIMS_CHECKS_PATH", "SEQCLAIMS_PROGRESS", "SEQCLAIMS_RECOMPUTE",
                       "HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def group_key(claim: Any) -> str:
    """Claims with the same model and dataset share their forward passes: one task per such group."""
    data = claim.data.model_dump(mode="json") if hasattr(claim.data, "model_dump") else claim.data
    return json.dumps({"model": _plain(claim.model), "data": data, "seed": claim.seed}, sort_keys=True, default=str)


def _plain(value: Any) -> Any:
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def worker_environment() -> dict[str, str]:
    """The variables a worker needs: the shared cache folder and the run's device, precision and offline flags."""
    env = {name: os.environ[name] for name in FORWARDED_VARIABLES if name in os.environ}
    env["SEQCLAIMS_CACHE"] = str(cache_dir().resolve())
    return env


def one_thread_per_worker() -> None:
    """A worker that shares the machine with others (an xdist worker, a Ray task) uses one torch thread and
    one BLAS thread. Beyond avoiding oversubscription this makes the executors agree to the last bit: the
    order of a multi-threaded BLAS sum depends on its thread count."""
    torch.set_num_threads(1)
    threadpool_limits(limits=1, user_api="blas")


def judge_paths(root: str, paths: list[str], env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Judge the claim files `paths` of the project `root` as the local run does; results as JSON by path.

    Runs inside a Ray worker (or anywhere): a claim that cannot be loaded or judged is an error result,
    never an exception, so one bad claim does not lose its group."""
    os.environ.update(env)
    one_thread_per_worker()
    families = load_families(checks_dirs(Path(root)))
    results = {}
    with project_root_set_to(Path(root)):
        for path in paths:
            results[path] = judge_path(Path(path), families).to_json()
    return results


@dataclass
class RayDispatch:
    """The groups submitted to Ray and, once fetched, their results by claim path."""

    pending: dict[str, Any]  # group key -> object ref
    group_of: dict[str, str]  # claim path -> group key
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    started_cluster: bool = False
    wait: Callable[[Any], dict] | None = None

    def result_for(self, path: Path) -> ClaimResult:
        key = self.group_of[str(path)]
        if key in self.pending:
            self.results.update(self.wait(self.pending.pop(key)))
        return ClaimResult.from_json(self.results[str(path)])


def start_ray(address: str | None, workers: int | None) -> bool:
    """Connect to the cluster at `address` ($RAY_ADDRESS when None), or start a local one with `workers`
    CPUs. Returns whether this run started the cluster (and so shuts it down)."""
    ray = _import_ray()
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves the machine
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
        return False
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    return True


def dispatch(root: Path, groups: dict[str, list[str]], *, started_cluster: bool) -> RayDispatch:
    """Submit one task per group; a group runs on one worker (one CPU, and one GPU where the cluster has any)."""
    ray = _import_ray()
    gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
    task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=0)(judge_paths)
    env = worker_environment()
    pending = {key: task.remote(str(root), paths, env) for key, paths in groups.items()}
    group_of = {path: key for key, paths in groups.items() for path in paths}
    return RayDispatch(pending, group_of, started_cluster=started_cluster, wait=ray.get)


def stop_ray(dispatch_state: RayDispatch | None) -> None:
    if dispatch_state is not None and dispatch_state.started_cluster:
        _import_ray().shutdown()


def _import_ray():
    try:
        import ray
    except ImportError:
        raise InputError("--claims-executor ray needs Ray: pip install 'seqclaims[ray]' (or pip install ray)") from None
    return ray
