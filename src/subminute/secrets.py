"""Secrets read from the environment or files, and their redaction from every text subminute writes.

Secret values are never taken from the spec itself (it lives in the control table, readable by anyone
who can list schedules): a spec names an environment variable or a file, and the value is read here.
Every value read is remembered so that :func:`redact` (used by the JSON log formatter and by error
messages) replaces it with ``***``. Standard library only.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

from .errors import ConfigError

__all__ = ["Secret", "redact", "register_secret", "secret_from_spec", "redact_body"]

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Remember a secret value so that :func:`redact` hides it (values under 4 characters are not
    remembered: hiding them would mangle ordinary text)."""
    if len(value) >= 4:
        with _secrets_lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """``text`` with every known secret value replaced by ``***``."""
    if not _secrets:
        return text
    with _secrets_lock:
        known = sorted(_secrets, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, "***")
    return text


class Secret:
    """A value from an environment variable (read once) or a file (re-read when it changes, so that a
    rotated token is picked up without a restart)."""

    def __init__(self, field: str, env: str | None = None, file: str | None = None) -> None:
        self.field = field
        self.env = env
        self.file = os.path.expanduser(file) if file else None
        self._value: str | None = None
        self._stamp: tuple[float, int] | None = None
        self._lock = threading.Lock()
        self.get()  # fail at build time, not on the first fire

    def describe(self) -> str:
        return f"${self.env}" if self.env else f"file {self.file}"

    def get(self) -> str:
        if self.env:
            if self._value is None:
                value = os.environ.get(self.env)
                if not value:
                    raise ConfigError(self.field, f"${self.env}",
                                      f"set the environment variable {self.env} for the controller")
                register_secret(value)
                self._value = value
            return self._value
        assert self.file is not None
        try:
            st = os.stat(self.file)
            stamp = (st.st_mtime, st.st_size)
            with self._lock:
                if stamp != self._stamp or self._value is None:
                    with open(self.file, encoding="utf-8") as fh:
                        value = fh.read().strip()
                    if not value:
                        raise ConfigError(self.field, self.file, "the secret file is empty")
                    register_secret(value)
                    self._value, self._stamp = value, stamp
                return self._value
        except OSError as exc:
            if self._value is not None:
                return self._value  # keep the last good value while the file is being replaced
            raise ConfigError(self.field, self.file,
                              f"name a readable file holding the secret ({exc.strerror})") from None


def secret_from_spec(spec: Mapping[str, Any], field: str, *, literal_key: str | None = None) -> Secret | None:
    """``{"env": "NAME"}`` or ``{"file": "/run/secrets/x"}`` inside ``spec``; a literal value under
    ``literal_key`` is refused (it would be stored in the control table)."""
    if literal_key and spec.get(literal_key) is not None:
        raise ConfigError(f"{field}.{literal_key}", "(hidden)",
                          f"never put a secret in the spec; use {field}.env or {field}.file")
    env, file = spec.get("env"), spec.get("file")
    if env is None and file is None:
        return None
    if env is not None and file is not None:
        raise ConfigError(field, spec, "use either env or file, not both")
    if env is not None and (not isinstance(env, str) or not env):
        raise ConfigError(f"{field}.env", env, "name an environment variable")
    if file is not None and (not isinstance(file, str) or not file):
        raise ConfigError(f"{field}.file", file, "name a file holding the secret")
    return Secret(field, env=env, file=file)


def _forms(value: str) -> set[str]:
    """A secret as sent: as is, and URL-encoded (query values, form bodies)."""
    return {value, quote(value, safe=""), quote(value), quote_plus(value, safe=""), quote_plus(value)}


def redact_body(data: bytes, own: Iterable[str] = ()) -> bytes:
    """``data`` with every secret subminute knows (:func:`subminute.secrets.redact`) and every text of
    ``own`` (as is and URL-encoded) replaced by ``***``. Works on any bytes: they are read as UTF-8 with
    undecodable bytes kept as they are, so a body that is not text comes back unchanged but for secrets."""
    text = data.decode("utf-8", "surrogateescape")
    clean = redact(text)
    hidden = sorted({form for value in own if len(value) >= 4 for form in _forms(value)}, key=len, reverse=True)
    for form in hidden:
        if form in clean:
            clean = clean.replace(form, "***")
    return data if clean == text else clean.encode("utf-8", "surrogateescape")
