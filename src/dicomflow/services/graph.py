"""The dependency graph of service jobs: the checks that need every job, and scheduling order.

Scheduling order is by stage first (``scheduler.json``'s pre jobs, the registry's
jobs, its post jobs), then by depth (a job with no dependencies has depth 0, any
other job one more than its deepest dependency), then ``sortPosition``, then
name. So every independent job comes before every dependent one, as the seed
promises, and a job always comes after the jobs it depends on.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from dicomflow.errors import ServiceDefinitionError
from dicomflow.services.job_spec import JobSpec

_STAGE_RANK = {"pre": 0, "main": 1, "post": 2}  # the scheduler.json stages, in order


@dataclass(frozen=True)
class GraphProblem:
    """Something wrong with the graph, and the jobs to blame for it."""

    message: str
    jobs: tuple[JobSpec, ...]


def check_graph(specs: Sequence[JobSpec], *, installed: Sequence[JobSpec] = ()) -> None:
    """Raise if ``specs`` clash with each other or with the ``installed`` jobs.

    Raises:
        ServiceDefinitionError: listing every duplicate name, unknown dependency and cycle.
    """
    problems = graph_problems(specs, installed=installed)
    if problems:
        raise ServiceDefinitionError("\n".join(problem.message for problem in problems))


def graph_problems(
    specs: Sequence[JobSpec], *, installed: Sequence[JobSpec] = (), broken: Sequence[str] = ()
) -> list[GraphProblem]:
    """Problems that involve ``specs``: duplicate names (blaming the later declaration),
    unknown dependencies and cycles. ``installed`` jobs are trusted; they only resolve names.
    ``broken`` names services that failed to load, for messages about unknown dependencies.
    """
    known = {spec.job_name: spec for spec in installed}
    problems: list[GraphProblem] = []
    for spec in specs:
        other = known.setdefault(spec.job_name, spec)
        if other is not spec:
            message = f"{spec.where}: jobName is already used by the job in {other.source}."
            problems.append(GraphProblem(message, (spec,)))
    problems += _unknown_dependencies(specs, known, broken)
    problems += _cycles(specs, known)
    return problems


def _unknown_dependencies(
    specs: Sequence[JobSpec], known: dict[str, JobSpec], broken: Sequence[str]
) -> list[GraphProblem]:
    problems = []
    failed = f" (services that failed to load: {', '.join(broken)})" if broken else ""
    for spec in specs:
        for name in spec.depends_on:
            if name not in known:
                close = difflib.get_close_matches(name, list(known), n=1)
                hint = f'; did you mean "{close[0]}"?' if close else "."
                message = (
                    f'{spec.where}: field "dependsOn" names "{name}", '
                    f"which is not a job of any installed service{failed}{hint}"
                )
                problems.append(GraphProblem(message, (spec,)))
    return problems


def _cycles(specs: Sequence[JobSpec], known: dict[str, JobSpec]) -> list[GraphProblem]:
    mine = {id(spec) for spec in specs}
    problems = []
    for cycle in _find_cycles(known):
        jobs = tuple(known[name] for name in cycle[:-1])
        if any(id(job) in mine for job in jobs):
            sources = list(dict.fromkeys(str(job.source) for job in jobs))
            also = f" (also {', '.join(sources[1:])})" if len(sources) > 1 else ""
            message = f"{sources[0]}: dependency cycle {' -> '.join(cycle)}{also}."
            problems.append(GraphProblem(message, jobs))
    return problems


def _find_cycles(known: dict[str, JobSpec]) -> list[list[str]]:
    """Cycles as name paths that end where they start, e.g. ``["a", "b", "a"]``."""
    done: set[str] = set()
    path: list[str] = []
    cycles: list[list[str]] = []

    def visit(name: str) -> None:
        path.append(name)
        for dependency in known[name].depends_on:
            if dependency in path:
                cycles.append([*path[path.index(dependency) :], dependency])
            elif dependency in known and dependency not in done:
                visit(dependency)
        path.pop()
        done.add(name)

    for name in sorted(known):
        if name not in done:
            visit(name)
    return cycles


def dependency_order(specs: Sequence[JobSpec]) -> list[JobSpec]:
    """``specs`` in scheduling order: depth, then ``sortPosition``, then name.

    Dependencies outside ``specs`` are ignored.

    Raises:
        ServiceDefinitionError: if the jobs form a cycle.
    """
    by_name = {spec.job_name: spec for spec in specs}
    depths: dict[str, int] = {}

    def depth(name: str, path: tuple[str, ...]) -> int:
        if name in path:
            cycle = " -> ".join([*path[path.index(name) :], name])
            raise ServiceDefinitionError(f"{by_name[name].where}: dependency cycle {cycle}.")
        if name not in depths:
            below = [depth(d, (*path, name)) for d in by_name[name].depends_on if d in by_name]
            depths[name] = 1 + max(below, default=-1)
        return depths[name]

    return sorted(
        specs,
        key=lambda spec: (
            _STAGE_RANK.get(str(spec.stage), 1),
            depth(spec.job_name, ()),
            spec.sort_position,
            spec.job_name,
        ),
    )
