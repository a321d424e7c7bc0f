"""Bad target specs fail at build time with one line naming the field, the value and what is allowed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from subminute.dispatch.base import make_event
from subminute.errors import ConfigError
from subminute.results.bodies import read_bodies
from subminute.results.writers import BodyWriters
from subminute.targets.base import Result, TargetEnv, build_target, register_target

BAD = [
    ({"type": "tcp", "port": 80}, "target.host"),
    ({"type": "tcp", "host": "h", "port": 0}, "target.port: 0 is not allowed; use a port number"),
    ({"type": "tcp", "host": "h", "port": 1, "until": -1}, "target.until"),
    ({"type": "tcp", "host": "h", "port": 1, "send": {"hex": "zz"}}, "target.send"),
    ({"type": "tcp", "host": "h", "port": 1, "timeout": 0}, "target.timeout: 0 is not allowed; use a number of seconds"),
    ({"type": "tcp", "host": "h", "port": 1, "keep": "sometimes"}, "target.keep.mode"),
    ({"type": "command"}, "target.argv: None"),
    ({"type": "command", "argv": []}, "target.argv"),
    ({"type": "command", "argv": ["x"], "shell": "yes"}, "target.shell"),
    ({"type": "command", "argv": ["x"], "env": {"A": 1}}, "target.env"),
    ({"type": "command", "argv": ["x"], "cwd": "/no/such/dir"}, "target.cwd"),
    ({"type": "command", "argv": ["x"], "expect_exit": [256]}, "target.expect_exit"),
    ({"type": "command", "argv": ["x"], "stdin": "file"}, "target.stdin"),
    ({"type": "http", "url": "ftp://x"}, "target.url"),
    ({"type": "http", "url": "http://x", "retries": 11}, "target.retries: 11 is not allowed; use a whole number from 0 to 10"),
    ({"type": "http", "url": "http://x", "retry_on": ["oops"]}, "target.retry_on"),
    ({"type": "http", "url": "http://x", "auth": {"type": "digest", "env": "X"}}, "target.auth.type"),
    ({"type": "http", "url": "http://x", "auth": {"type": "bearer"}}, "add env (a variable name) or file"),
    ({"type": "http", "url": "http://x", "auth": {"type": "header", "env": "HOME"}}, "target.auth.name"),
    ({"type": "http", "url": "http://x", "auth": {"type": "basic", "env": "HOME"}}, "target.auth.username"),
    ({"type": "http", "url": "http://x", "auth": {"type": "bearer", "env": "HOME", "file": "/x"}}, "not both"),
    ({"type": "http", "url": "http://x", "auth": {"type": "bearer", "file": "/no/such/secret"}}, "readable file"),
    ({"type": "http", "url": "http://x", "decode": "xml"}, "target.decode"),
    ({"type": "http", "url": "http://x", "keep": {"mode": "all", "retain": 0}}, "target.keep.retain"),
    ({"type": "http", "url": "http://x", "keep": {"format": "jsonl"}}, "target.keep.path"),
    ({"type": "http", "url": "http://x", "keep": {"format": "csv"}}, "target.keep.format"),
    ({"type": "http", "url": "http://x", "keep": {"mode": "all", "size": 3}}, "target.keep.size"),
    # an empty program, whatever its form (issue 9: `add --command ""` stored a target that recorded ok)
    ({"type": "command", "argv": ""}, "target.argv: '' is not allowed"),
    ({"type": "command", "argv": "", "shell": True}, "target.argv: '' is not allowed"),
    ({"type": "command", "argv": "   ", "shell": True}, "target.argv: '   ' is not allowed"),
    ({"type": "command", "argv": "\t\n", "shell": True}, "target.argv"),
    ({"type": "command", "argv": ["", "x"]}, "target.argv: ['', 'x'] is not allowed"),
    ({"type": "command", "argv": [" ", "x"]}, "target.argv: [' ', 'x'] is not allowed; name the program"),
    ({"type": "command", "argv": ["  "], "shell": True}, "target.argv"),
    ({"type": "command", "argv": ["/bin/echo", "a\x00b"]}, "target.argv"),
    ({"type": "command", "argv": ["/bin/echo", 3]}, "target.argv"),
    ({"type": "command", "argv": {"program": "x"}}, "target.argv"),
    ({"type": "command", "argv": 7}, "target.argv: 7 is not allowed"),
    ({"type": "http"}, "target.url: None is not allowed"),
    ({"type": "http", "url": "http://x", "headers": {"Bad Name": "x"}}, "target.headers"),
    ({"type": "http", "url": "http://x", "headers": {"X-A": "1\r\nX-Injected: 2"}}, "target.headers"),
    ({"type": "python"}, "target.ref: None is not allowed"),
    ({"type": "python", "ref": "no_such_module_xyz:run"}, "target.ref: 'no_such_module_xyz:run' is not allowed"),
    ({"type": "python", "ref": "os:no_such_function"}, "target.ref"),
    ({"type": "python", "ref": "os:sep"}, "target.ref"),
    ({"type": "python", "ref": "os.getcwd"}, "target.ref"),
    ({"type": "python", "ref": "os:getcwd", "isolation": "container"}, "target.isolation: 'container' is not"),
    ({"type": "python", "ref": "no_such_module_xyz:run", "isolation": "process"}, "target.ref"),
    # every type refuses a field it does not know, naming it and the fields it takes
    ({"type": "noop", "url": "http://x"}, "target.url: 'http://x' is not allowed; use only type"),
    ({"type": "python", "ref": "os:getcwd", "function": "x"}, "target.function: 'x' is not allowed; use only "
                                                             "type, ref, isolation"),
    ({"type": "http", "url": "http://x", "timout": 5}, "target.timout: 5 is not allowed; use only type, url, "),
    ({"type": "tcp", "host": "h", "port": 1, "delimiter": "\n"}, "target.delimiter: '\\n' is not allowed; use only"),
    ({"type": "command", "argv": ["x"], "args": ["y"]}, "target.args: ['y'] is not allowed; use only type, argv"),
    ({"type": "http", "url": "http://x", "auth": {"type": "bearer", "env": "HOME", "nmae": "x"}},
     "target.auth.nmae: 'x' is not allowed; use only type, env, file"),
    ({"type": "http", "url": "http://x", "auth": {"type": "header", "name": "K", "env": "HOME", "username": "me"}},
     "target.auth.username: 'me' is not allowed; use only type, name, env, file"),
    ({"type": "http", "url": "http://x", "auth": {"type": "basic", "username": "me", "env": "HOME", "name": "n"}},
     "target.auth.name"),
    ({"type": "http", "url": "http://x", "auth": {"type": "query", "name": "k", "value": "literal-secret"}},
     "never put a secret in the spec"),
    ({"type": "tcp", "host": "h", "port": 1, "send": {"hex": "0a", "text": "x"}}, "target.send"),
]


@pytest.mark.parametrize(("spec", "message"), BAD, ids=[f"{s['type']}-{i}" for i, (s, _) in enumerate(BAD)])
def test_bad_spec(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_target(spec)
    text = str(info.value)
    assert message in text
    assert "is not allowed" in text and "\n" not in text


def test_good_specs_build() -> None:
    tcp = build_target({"type": "tcp", "host": "localhost", "port": 6379, "send": {"base64": "UElORw0K"},
                        "until": "\r\n"})
    assert tcp.kind == "tcp" and tcp.send == b"PING\r\n" and tcp.until_delim == b"\r\n"
    cmd = build_target({"type": "command", "argv": ["echo", "a b"], "shell": True})
    assert cmd.argv == ["/bin/sh", "-c", "echo 'a b'"]
    http = build_target({"type": "http", "url": "https://example.com:8443/p?q=1", "retries": 2,
                         "retry_on": ["5xx"], "keep": "change"})
    assert (http.host, http.port, http.path, http.retries) == ("example.com", 8443, "/p?q=1", 2)
    assert http.retry_classes == {5} and http.keeper is not None and http.keeper.mode == "change"


def test_custom_factories_take_the_spec_or_the_spec_and_the_env(tmp_path: Path) -> None:
    seen: list[object] = []

    class OneArgument:
        kind = "one"

        def __init__(self, spec: Any) -> None:
            seen.append(spec["type"])

        def run(self, event: Any, timeout_s: float) -> Result:
            return Result()

    def two_arguments(spec: Any, env: TargetEnv | None) -> OneArgument:
        seen.append(env)
        return OneArgument(spec)

    register_target("one-argument", OneArgument)
    register_target("two-arguments", two_arguments)
    env = TargetEnv(bodies=BodyWriters(tmp_path / "b.db"))
    build_target({"type": "one-argument"}, env=env)
    build_target({"type": "two-arguments"}, env=env)
    build_target({"type": "two-arguments"})
    assert seen == ["one-argument", env, "two-arguments", None, "two-arguments"]


def test_targets_keep_through_the_env_they_are_given(tmp_path: Path) -> None:
    writers = BodyWriters(tmp_path / "runtime.db")
    target = build_target({"type": "command", "argv": ["/bin/echo", "hi"], "keep": "all"},
                          env=TargetEnv(bodies=writers))
    assert target.run(make_event(5, "c", 1_800_000_000_000, 1, 1000), 5).detail["kept"] is True
    writers.close()
    assert [b["body"] for b in read_bodies(tmp_path / "runtime.db", 5)] == ["hi\n"]


@pytest.mark.parametrize("kind", ["http", "tcp", "command", "python", "noop"])
def test_every_type_declares_its_fields_and_refuses_others(kind: str) -> None:
    good = {"http": {"url": "http://x"}, "tcp": {"host": "h", "port": 1}, "command": {"argv": ["x"]},
            "python": {"ref": "os:getcwd"}, "noop": {}}[kind]
    build_target({"type": kind, **good})
    with pytest.raises(ConfigError) as info:
        build_target({"type": kind, **good, "colour": "blue"})
    assert info.value.field == "target.colour" and info.value.allowed.startswith("use only type")
    assert "\n" not in str(info.value)


def test_a_module_that_fails_to_import_is_one_line_naming_the_ref(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "raises_at_import_xyz.py").write_text('raise RuntimeError("first line\\nsecond line")\n')
    (tmp_path / "bad_syntax_xyz.py").write_text("def f(:\n    pass\n")
    (tmp_path / "exits_at_import_xyz.py").write_text("import sys\nsys.exit(4)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for module, why in (("raises_at_import_xyz", "RuntimeError: first line second line"),
                        ("bad_syntax_xyz", "SyntaxError"), ("exits_at_import_xyz", "SystemExit: 4")):
        with pytest.raises(ConfigError) as info:
            build_target({"type": "python", "ref": f"{module}:f"})
        text = str(info.value)
        assert text.startswith(f"target.ref: '{module}:f' is not allowed") and why in text, text
        assert "\n" not in text



def test_a_returned_value_keeps_its_repr_bounded_without_making_all_of_it() -> None:
    from subminute.targets.simple import outcome

    assert outcome("f", {"vehicles": 3}).detail == {"returned": "{'vehicles': 3}"}  # ordinary values: their repr
    assert outcome("f", [1, "a", None]).detail == {"returned": "[1, 'a', None]"}
    huge = "x" * 50_000_000  # its full repr (and the search for secrets in it) took a worker 0.2 s
    begun = time.thread_time()
    kept = outcome("f", huge).detail["returned"]
    assert time.thread_time() - begun < 0.05 and kept.startswith("'xxx") and len(kept) <= 520
    assert len(outcome("f", list(range(10_000_000))).detail["returned"]) <= 520
