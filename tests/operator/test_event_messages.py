"""Event messages fit the API server's limit, counted in bytes as the server counts them."""

from __future__ import annotations

from lockyard_operator.handlers import EVENT_MESSAGE_BYTES, fit_message


def test_a_short_message_is_unchanged() -> None:
    assert fit_message("BackendUnreachable: refused") == "BackendUnreachable: refused"


def test_a_long_non_ascii_message_keeps_head_and_tail_within_the_byte_limit() -> None:
    # 700 characters of three bytes each: under kopf's 1024-character cut, over 1024 bytes.
    message = "BackendUnreachable: host " + "\u65e5" * 700 + " port 6379"
    fitted = fit_message(message)
    assert len(fitted.encode()) <= EVENT_MESSAGE_BYTES
    assert fitted.startswith("BackendUnreachable: host ")
    assert fitted.endswith(" port 6379")
    assert "..." in fitted


def test_a_cut_never_splits_a_character() -> None:
    for length in range(1020, 1040):
        fitted = fit_message("é" * length, limit=101)
        assert len(fitted.encode()) <= 101
        assert set(fitted) <= {"é", "."}
