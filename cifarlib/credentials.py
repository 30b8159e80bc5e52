"""Credential scan: finds Google tokens, API keys, client secrets and private keys before they are committed.

The reference notebook once held a pasted Google OAuth code, so every notebook is scanned whole: every string
of its JSON (notebook and cell metadata, sources, outputs, attachments, widget state), each as written and
URL-decoded (``code=4%2F0A...``). Other text files are scanned line by line. The test suite runs it over the
committed notebooks, and ``.pre-commit-config.yaml`` runs it on every commit::

    python cifarlib/credentials.py FILE...    # prints one line per finding, exits 1 if any

It uses only the standard library and imports nothing from cifarlib, so the hook starts in milliseconds.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote_plus

# No word character or base64 character may come just before a token: that keeps long base64 payloads (images
# in outputs and attachments), where "4/" and "AIza" occur by chance, from counting as tokens.
_START = r"(?<![0-9A-Za-z+/_-])"
PATTERNS = {
    "Google OAuth authorization code": re.compile(_START + r"4/[0-9A-Za-z_-]{20,}"),
    "Google OAuth access token": re.compile(_START + r"ya29\.[0-9A-Za-z_-]{20,}"),
    "Google OAuth refresh token": re.compile(_START + r"1//[0-9A-Za-z_-]{20,}"),
    "Google OAuth client secret": re.compile(_START + r"GOCSPX-[0-9A-Za-z_-]{20,}"),
    "Google API key": re.compile(_START + r"AIza[0-9A-Za-z_-]{35}"),
    "client secret field": re.compile(r"""client[_-]?secret["']?\s*[:=]""", re.IGNORECASE),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "GitHub token": re.compile(_START + r"gh[pousr]_[0-9A-Za-z]{30,}"),
}


@dataclass(frozen=True)
class Finding:
    """One suspected credential: the file, where in it, what kind, and its first characters only."""

    path: str
    where: str
    kind: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.path}: {self.where}: looks like a {self.kind} ({self.excerpt}...)"


def scan_text(text: str) -> list[tuple[str, str]]:
    """``(kind, excerpt)`` for each credential in ``text``, as written or URL-decoded."""
    found = []
    variants = [text]
    decoded = unquote_plus(text) if "%" in text else text
    if decoded != text:
        variants.append(decoded)
    for variant in variants:
        for kind, pattern in PATTERNS.items():
            for match in pattern.finditer(variant):
                found.append((kind, match.group(0)[:8]))
    return sorted(set(found))


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
    """A notebook by its JSON structure, any other text file line by line; binary files are skipped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, IsADirectoryError):
        return []
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
    findings = [
        finding for name in (argv if argv is not None else sys.argv[1:]) for finding in scan_file(name)
    ]
    for finding in findings:
        print(finding)
    if findings:
        print("Remove the credentials above (and revoke them: they may already be copied).", file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
