"""Remote devices as a load setting: declared once (settings.py), so the CLI flag, presets
and the API's Ollama options all read and check them the same way. (The devices themselves
are tested over loopback in tests/test_cli_rpc.py.)"""

from __future__ import annotations

import argparse

import pytest

from app.api import params_ollama, params_openai
from app.api.errors import ApiError
from app.engine import rpc_probe, settings
from app.engine.settings import LoadSettings


def parse(*argv: str) -> LoadSettings:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser, LoadSettings, "load")
    return settings.from_args(LoadSettings, parser.parse_args(list(argv)))


def test_the_rpc_flag_takes_commas_and_repeats_in_order_once_each():
    s = parse("--rpc", "10.0.0.2:50052, 10.0.0.3:50052", "--rpc", "[::1]:7000,10.0.0.2:50052")
    assert s.rpc == ("10.0.0.2:50052", "10.0.0.3:50052", "[::1]:7000")
    assert parse().rpc == ()
    assert "RPC 10.0.0.2:50052,10.0.0.3:50052,[::1]:7000" in s.summary()


def test_presets_read_a_list_or_a_comma_separated_string():
    loaded, problems = settings.from_dict(LoadSettings, {"rpc": "a:1,b:2"})
    assert loaded.rpc == ("a:1", "b:2") and not problems
    loaded, _ = settings.from_dict(LoadSettings, settings.to_dict(loaded))  # saved as a list
    assert loaded.rpc == ("a:1", "b:2")


@pytest.mark.parametrize(
    ("endpoint", "words"),
    [
        ("gpu-box", "'gpu-box' is not a HOST:PORT address"),
        ("gpu-box:0", "the port must be between 1 and 65535"),
        ("gpu-box:99999", "the port must be between 1 and 65535"),
        ("http://gpu-box:50052", "is not a HOST:PORT address"),
    ],
)
def test_a_bad_address_is_an_error_on_the_rpc_field(endpoint, words):
    problems = settings.validate(LoadSettings(rpc=(endpoint,)))
    errors = [p for p in problems if p.is_error]
    assert [p.field for p in errors] == ["rpc"] and words in errors[0].message


def test_no_gpu_layers_with_remote_devices_is_a_warning_that_says_what_to_do():
    problems = settings.validate(LoadSettings(rpc=("gpu-box:50052",), n_gpu_layers=0))
    assert [(p.severity, p.field) for p in problems] == [("warning", "n_gpu_layers")]
    assert "set GPU layers to -1" in problems[0].message


def test_the_draft_model_stays_here():
    s = LoadSettings(rpc=("gpu-box:50052",), spec="draft", model_draft="/x/draft.gguf")
    assert s.draft_settings().rpc == ()


def test_api_requests_take_remote_devices_and_refuse_other_types():
    req = params_ollama.parse_ollama_generate(
        {"model": "m", "prompt": "x", "options": {"rpc": ["a:1", "b:2,c:3"]}}
    )
    assert req.load(LoadSettings()).rpc == ("a:1", "b:2", "c:3")
    req = params_openai.parse_openai_completion({"model": "m", "prompt": "x", "rpc": "a:1"})
    assert req.load(LoadSettings()).rpc == ("a:1",)  # the openai client's extra_body
    with pytest.raises(ApiError) as e:
        params_ollama.parse_ollama_generate({"model": "m", "prompt": "x", "options": {"rpc": 5}})
    assert e.value.status == 400 and "'options.rpc' must be a string or a list" in e.value.message
    with pytest.raises(ApiError) as e:  # checked as it is parsed, before any load
        params_ollama.parse_ollama_generate(
            {"model": "m", "prompt": "x", "options": {"rpc": "nohost"}}
        )
    assert "'options.rpc': Remote devices: 'nohost' is not a HOST:PORT" in str(e.value.message)


def test_a_port_where_nothing_listens_is_a_sentence_that_names_it():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        endpoint = f"127.0.0.1:{s.getsockname()[1]}"  # bound, not listening: refused
        with pytest.raises(rpc_probe.RpcError) as e:
            rpc_probe.probe(endpoint, timeout=2.0)
    assert f"Cannot connect to the RPC server at {endpoint}" in str(e.value)


def test_a_listener_that_is_not_an_rpc_server_is_named_too():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        endpoint = f"127.0.0.1:{s.getsockname()[1]}"
        with pytest.raises(rpc_probe.RpcError) as e:  # accepted by the kernel, never answered
            rpc_probe.probe(endpoint, timeout=0.5)
    assert f"The RPC server at {endpoint} accepted the connection but did not answer" in str(
        e.value
    )
