"""Command line and kopf settings of the operator process."""

from __future__ import annotations

import kopf
import pytest

from lockyard.kube.lease_election import ElectionTimings
from lockyard_operator.__main__ import (
    DEFAULT_LEASE_NAME,
    FINALIZER,
    build_parser,
    deprecated_flags,
    operator_settings,
    parse_options,
)


def test_scope_is_required_and_exclusive() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["-n", "a", "--all-namespaces"])
    options = parse_options(["-n", "a", "--namespace", "b"])
    assert options.namespaces == ("a", "b")
    assert options.election is None, "standalone unless --leader-elect"


def test_leader_election_defaults_are_client_go_s() -> None:
    election = parse_options(["-A", "--leader-elect"]).election
    assert election is not None
    assert election.timings == ElectionTimings(15, 10.0, 2.0)
    assert (election.name, election.namespace) == (DEFAULT_LEASE_NAME, None)
    # <hostname>_<uuid>: a restarted process is a new candidate.
    host, _, unique = election.identity.rpartition("_")
    assert host
    assert len(unique) == 36
    other = parse_options(["-A", "--leader-elect"]).election
    assert other is not None
    assert other.identity != election.identity


def test_leader_election_flags() -> None:
    election = parse_options(
        [
            "-n", "a", "--leader-elect",
            "--leader-elect-resource-name=ops", "--leader-elect-resource-namespace=system",
            "--leader-elect-identity=pod-1", "--leader-elect-lease-duration=4",
            "--leader-elect-renew-deadline=3", "--leader-elect-retry-period=0.5",
        ]
    ).election  # fmt: skip
    assert election is not None
    assert (election.name, election.namespace, election.identity) == ("ops", "system", "pod-1")
    assert election.timings == ElectionTimings(4, 3.0, 0.5)


@pytest.mark.parametrize(
    "timings",
    [
        ["--leader-elect-lease-duration=4", "--leader-elect-renew-deadline=4"],
        ["--leader-elect-renew-deadline=2", "--leader-elect-retry-period=2"],
    ],
)
def test_a_renew_deadline_must_end_before_the_lease(timings: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_options(["-A", "--leader-elect", *timings])


def test_peering_flags_still_parse_and_mean_the_lease() -> None:
    argv = ["-A", "--peering", "ops", "--priority", "7", "--peering-lifetime=4"]
    election = parse_options(argv).election
    assert election is not None
    assert election.name == "ops"
    assert deprecated_flags(argv) == ["--peering", "--priority", "--peering-lifetime=4"]


def test_kopf_marks_use_the_lockyard_prefix() -> None:
    settings = operator_settings(parse_options(["-A", "--leader-elect"]))
    assert settings.persistence.finalizer == FINALIZER == "lockyard.dev/finalizer"
    progress = settings.persistence.progress_storage
    diffbase = settings.persistence.diffbase_storage
    assert isinstance(progress, kopf.AnnotationsProgressStorage)
    assert progress.prefix == "lockyard.dev"
    assert isinstance(diffbase, kopf.AnnotationsDiffBaseStorage)
    assert diffbase.prefix == "lockyard.dev"
    assert settings.peering.standalone, "the Lease election decides; kopf never peers"
