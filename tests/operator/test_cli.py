"""Command line and kopf settings of the operator process."""

from __future__ import annotations

import time

import kopf
import pytest

from lockyard_operator.__main__ import (
    FINALIZER,
    build_parser,
    default_priority,
    operator_settings,
    parse_options,
)


def test_scope_is_required_and_exclusive() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["-n", "a", "--all-namespaces"])
    options = parse_options(["-n", "a", "--namespace", "b", "--peering", "p", "--priority", "7"])
    assert options.namespaces == ("a", "b")
    assert (options.peering, options.priority) == ("p", 7)


def test_older_replicas_outrank_newer_ones() -> None:
    first = default_priority()
    time.sleep(0.002)
    assert default_priority() < first


def test_kopf_marks_use_the_lockyard_prefix() -> None:
    settings = operator_settings(parse_options(["-A", "--peering-lifetime", "4"]))
    assert settings.persistence.finalizer == FINALIZER == "lockyard.dev/finalizer"
    progress = settings.persistence.progress_storage
    diffbase = settings.persistence.diffbase_storage
    assert isinstance(progress, kopf.AnnotationsProgressStorage)
    assert progress.prefix == "lockyard.dev"
    assert isinstance(diffbase, kopf.AnnotationsDiffBaseStorage)
    assert diffbase.prefix == "lockyard.dev"
    assert settings.peering.lifetime == 4
