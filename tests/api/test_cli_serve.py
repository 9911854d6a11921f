"""`hearth serve`'s options: bad values are refused with a sentence before anything starts,
and a port in use is one line and exit 1."""

from __future__ import annotations

import socket

import pytest

from app.cli import main


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--keep-alive", "soon"], "'--keep-alive' must be a duration"),
        (["--port", "70000"], "--port must be 0-65535"),
        (["--max-loaded", "0"], "--max-loaded must be at least 1"),
        (["--max-queue", "0"], "--max-queue must be at least 1"),
    ],
)
def test_bad_options_exit_2_with_a_sentence(args, words, capsys):
    assert main(["serve", *args]) == 2
    assert words in capsys.readouterr().err


def test_a_port_in_use_is_one_line_and_exit_1(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"Port {port} on 127.0.0.1 is already in use" in err and "another port" in err
