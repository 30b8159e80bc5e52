"""Credential scan: finds tokens, keys and secrets in notebooks and other text files before they are committed.

The reference notebook once held a pasted Google OAuth code, so every notebook is scanned whole: every string
of its JSON (notebook and cell metadata, sources, outputs, attachments, widget state). Other text files are
scanned line by line. Each string is scanned as written and as it would read once decoded, since outputs hide
tokens in several ways:

- ANSI colour codes, as in IPython tracebacks (``\\x1b[0;32m4/0A...``), are stripped;
- URL-encoding (repeatedly: ``%252F`` is a ``/`` encoded twice) and HTML entities are decoded;
- base64 text (``print(base64.b64encode(token))``) is decoded where it decodes to text.

The general shapes (AWS keys, private key blocks, JSON web tokens, GitHub, Slack and other vendors' tokens,
high-entropy strings after a secret-looking keyword) come from Yelp's maintained ``detect-secrets`` plugins.
cifarlib adds only the Google shapes it lacks (OAuth codes and tokens, client secrets, API keys). A file that is
not UTF-8 text cannot be checked and is an error, not a pass. ``.pre-commit-config.yaml`` runs this on every
commit, and ``make lint`` (so CI) runs the same command over every tracked file::

    python cifarlib/credentials.py FILE...    # one line per finding, exit 1 if any

It imports nothing from cifarlib (only the standard library and detect-secrets), so the hook starts quickly.
docs/reliability.md gives what it catches, shape by place, as tests/test_credentials.py measures it.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote_plus

# A token may not continue a word: "x4/0A..." is not an OAuth code.
_START = r"(?<![0-9A-Za-z_-])"
GOOGLE_PATTERNS = {
    "Google OAuth authorization code": re.compile(_START + r"4/[0-9A-Za-z_-]{20,}"),
    "Google OAuth access token": re.compile(_START + r"ya29\.[0-9A-Za-z_-]{20,}"),
    "Google OAuth refresh token": re.compile(_START + r"1//[0-9A-Za-z_-]{20,}"),
    "Google OAuth client secret": re.compile(_START + r"GOCSPX-[0-9A-Za-z_-]{20,}"),
    "Google API key": re.compile(_START + r"AIza[0-9A-Za-z_-]{35}"),
    "client secret field": re.compile(r"""client[_-]?secret["']?\s*[:=]""", re.IGNORECASE),
}
# Inside a run of base64 characters this long (an image in an output or attachment), "4/" and "AIza" occur by
# chance; a real token in a URL path or a line of text sits in a far shorter run.
_BASE64_RUN = re.compile(r"[0-9A-Za-z+/=_-]{200,}")
# Candidates for base64-encoded text: at least 16 characters (a 12-byte secret), standard or URL-safe.
_BASE64_TEXT = re.compile(r"(?<![0-9A-Za-z+/_-])[0-9A-Za-z+/_-]{16,}={0,2}")
# CSI sequences (colours, cursor moves) and OSC sequences (titles, hyperlinks).
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
# Decoding rounds of URL-encoding and HTML entities, enough for anything encoded twice or three times.
_DECODE_ROUNDS = 5
# detect-secrets' plugin for public IP addresses flags no credential, and notebooks show addresses on purpose.
_NOT_CREDENTIALS = {"Public IP (ipv4)"}


ALLOWLIST_MARKER = "pragma: allowlist secret"


class UnscannableFile(ValueError):
    """A file the scan cannot read as text: reported as an error, never passed."""


@dataclass(frozen=True)
class Finding:
    """One suspected credential: the file, where in it, what kind, and its first characters only."""

    path: str
    where: str
    kind: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.path}: {self.where}: looks like a {self.kind} ({self.excerpt}...)"


def decoded_forms(text: str) -> list[str]:
    """``text`` as written and as every decoding above reads it (each form once)."""
    forms = [text]
    current = _ANSI.sub("", text)
    for _ in range(_DECODE_ROUNDS + 1):
        if current not in forms:
            forms.append(current)
        decoded = html.unescape(unquote_plus(current)) if ("%" in current or "&" in current) else current
        if decoded == current:
            break
        current = decoded
    for form in list(forms):
        for match in _BASE64_TEXT.finditer(form):
            if (plain := _base64_text(match.group(0))) is not None and plain not in forms:
                forms.append(plain)
    return forms


def _base64_text(candidate: str) -> str | None:
    padded = candidate + "=" * (-len(candidate) % 4)
    try:
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        plain = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return plain if plain.isprintable() or all(c.isprintable() or c.isspace() for c in plain) else None


def scan_text(text: str) -> list[tuple[str, str]]:
    """``(kind, excerpt)`` for each credential in ``text`` or in any of its decoded forms."""
    found = set()
    for form in decoded_forms(text):
        chance = [match.span() for match in _BASE64_RUN.finditer(form)]
        for kind, pattern in GOOGLE_PATTERNS.items():
            for match in pattern.finditer(form):
                if not any(start <= match.start() < end for start, end in chance):
                    found.add((kind, match.group(0)[:8]))
        for line in form.splitlines() or [form]:
            found.update(_general_shapes(line))
    return sorted(found)


def _general_shapes(line: str) -> set[tuple[str, str]]:
    """detect-secrets' findings in one line, with the limits of its default settings. A line that says
    ``pragma: allowlist secret`` (detect-secrets' own marker, for a published checksum say) is passed; the
    Google shapes above take no marker."""
    found = set()
    if ALLOWLIST_MARKER in line:
        return found
    for plugin in _detectors():
        for secret in plugin.analyze_line(filename="", line=line, line_number=0):
            if secret.type not in _NOT_CREDENTIALS:
                found.add((secret.type, (secret.secret_value or "")[:8]))
    return found


_PLUGINS: list | None = None


def _detectors() -> list:
    global _PLUGINS
    if _PLUGINS is None:
        try:
            from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
            from detect_secrets.settings import default_settings
        except ImportError as error:
            raise SystemExit(
                "the credential scan needs detect-secrets: pip install -r requirements-dev.txt"
            ) from error
        with default_settings():
            _PLUGINS = [plugin() for plugin in get_mapping_from_secret_type_to_class().values()]
    return _PLUGINS


def scan_json(value, path: str, where: str = "") -> list[Finding]:
    """Every string in a JSON value (keys included), with its location as a JSON path."""
    findings = []
    if isinstance(value, dict):
        for key, item in value.items():
            location = f"{where}/{key}"
            findings += [Finding(path, location, k, e) for k, e in scan_text(str(key))]
            findings += scan_json(item, path, location)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            findings += scan_json(item, path, f"{where}/{index}")
    elif isinstance(value, str):
        findings += [Finding(path, where or "/", k, e) for k, e in scan_text(value)]
    return findings


def scan_file(path: str | Path) -> list[Finding]:
    """A notebook by its JSON structure, any other text file line by line; binary files (a NUL byte in their
    first 8 KiB, as pre-commit's ``text`` type tells them apart) are skipped. A text file that is not UTF-8
    raises ``UnscannableFile``."""
    path = Path(path)
    raw = path.read_bytes()
    if b"\0" in raw[:8192]:
        return []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UnscannableFile(
            f"{path}: not UTF-8 text ({error.reason} at byte {error.start}), so it cannot be scanned"
        ) from None
    if path.suffix == ".ipynb":
        try:
            return scan_json(json.loads(text), str(path))
        except json.JSONDecodeError:
            pass  # Not valid JSON: scanned as text below, so nothing escapes.
    return [
        Finding(str(path), f"line {number}", kind, excerpt)
        for number, line in enumerate(text.splitlines(), start=1)
        for kind, excerpt in scan_text(line)
    ]


def main(argv: list[str] | None = None) -> int:
    findings, unscannable = [], []
    for name in argv if argv is not None else sys.argv[1:]:
        try:
            findings += scan_file(name)
        except (UnscannableFile, OSError) as error:
            unscannable.append(str(error))
    for finding in findings:
        print(finding)
    for problem in unscannable:
        print(problem)
    if findings:
        print("Remove the credentials above (and revoke them: they may already be copied).", file=sys.stderr)
    return 1 if findings or unscannable else 0


if __name__ == "__main__":
    sys.exit(main())
