"""The credential scan: each token shape found anywhere in a notebook's JSON, URL-encoded too; ordinary text not.

The fake secrets are assembled from pieces at run time, so this file itself holds none for the scan to find.
"""

import base64
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import nbformat
import pytest

from cifarlib.credentials import UnscannableFile, main, scan_file, scan_text

BODY = "0AeaYSHBx7Kq9Zt3LmN_wPv-2RsTuXy5"  # 32 token characters  # pragma: allowlist secret
FAKES = {
    "Google OAuth authorization code": "4" + "/" + BODY,
    "Google OAuth access token": "ya29" + "." + BODY,
    "Google OAuth refresh token": "1/" + "/" + BODY,
    "Google OAuth client secret": "GOCSPX" + "-" + BODY,  # pragma: allowlist secret
    "Google API key": "AI" + "za" + BODY + "abc",
    "client secret field": '"client' + '_secret": "x"',  # pragma: allowlist secret
    "Private Key": "-----BEGIN RSA " + "PRIVATE KEY-----",
    "GitHub Token": "gh" + "p_" + BODY.replace("_", "a").replace("-", "b") + "Wx4Z",
}
REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("kind", FAKES)
def test_each_token_shape_is_found(kind):
    assert kind in [found for found, _ in scan_text(f"pasted: {FAKES[kind]} here")]


def test_url_encoded_and_camel_case_forms_are_found():
    code = FAKES["Google OAuth authorization code"].replace("/", "%2F")
    assert (
        scan_text(f"https://localhost/?state=x&code={code}&scope=drive")[0][0]
        == "Google OAuth authorization code"
    )
    camel = '{"client' + 'Secret": "abc"}'  # pragma: allowlist secret
    assert "client secret field" in [kind for kind, _ in scan_text(camel)]
    excerpt = scan_text(FAKES["Google OAuth client secret"])[0][1]
    assert len(excerpt) == 8, "findings show only the first characters of a secret"


@pytest.mark.parametrize(
    "text",
    [
        "4/4 [==============================] - 1s 12ms/step",
        "runs/2026-11-29/batch-size-b128/history.csv",
        "drive.mount('/content/drive')",
        "see the client secret section of the docs",
        "ya29. is the prefix of an access token",
        "-----BEGIN CERTIFICATE-----",
    ],
)
def test_ordinary_text_is_not_a_credential(text):
    assert scan_text(text) == []


def test_base64_images_do_not_count_as_tokens():
    import base64

    rng_bytes = bytes(range(256)) * 400
    payload = base64.b64encode(rng_bytes).decode()
    payload = payload[:5000] + "4/" + "AIza" + BODY * 2 + payload[5000:]
    assert scan_text(payload) == []


def notebook_with(tmp_path, place):
    book = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_markdown_cell("# Title")
    book.cells = [cell, nbformat.v4.new_code_cell("print(1)")]
    secret = FAKES["Google OAuth refresh token"]
    if place == "notebook metadata":
        book.metadata["colab"] = {"token": secret}
    elif place == "cell metadata":
        cell.metadata["note"] = secret
    elif place == "attachment":
        cell.attachments = {"note.txt": {"text/plain": secret}}
    elif place == "widget state":
        book.metadata["widgets"] = {
            "application/vnd.jupyter.widget-state+json": {"state": {"w": {"v": secret}}}
        }
    elif place == "output":
        book.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"token {secret}\n")]
    path = tmp_path / "leak.ipynb"
    path.write_text(json.dumps(book))
    return path


@pytest.mark.parametrize(
    "place", ["notebook metadata", "cell metadata", "attachment", "widget state", "output"]
)
def test_a_notebook_is_scanned_whole(tmp_path, place):
    findings = scan_file(notebook_with(tmp_path, place))
    assert [f.kind for f in findings] == ["Google OAuth refresh token"]
    assert str(findings[0]).startswith(f"{tmp_path / 'leak.ipynb'}: /")


def test_command_line_as_the_pre_commit_hook_runs_it(tmp_path):
    clean = tmp_path / "clean.py"
    clean.write_text("print('hello')\n")
    leaky = tmp_path / "leaky.md"
    leaky.write_text(f"line one\nkey = {FAKES['Google API key']}\n")
    script = REPOSITORY / "cifarlib" / "credentials.py"
    ok = subprocess.run([sys.executable, str(script), str(clean)], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout == ""
    bad = subprocess.run(
        [sys.executable, str(script), str(clean), str(leaky)], capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert bad.stdout.strip() == f"{leaky}: line 2: looks like a Google API key (AIza0Aea...)"


def test_pre_commit_runs_the_scan():
    config = (REPOSITORY / ".pre-commit-config.yaml").read_text()
    assert "entry: python cifarlib/credentials.py" in config


def test_the_repository_holds_no_credentials():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPOSITORY, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    findings = [str(f) for name in tracked.stdout.split() for f in scan_file(REPOSITORY / name)]
    assert findings == []


# ---------------------------------------------------------------- every shape in every place (docs/reliability.md)

AWS_SECRET = (
    "wJalrXUtnFEMI" + "/K7MDENG/bPxRfiCY" + "Q3Z7X2M4L9K8"
)  # 40 characters  # pragma: allowlist secret
SHAPES = {
    **{kind: FAKES[kind] for kind in list(FAKES)[:5]},
    "AWS access key id": "AKIA" + "Q3Z7X2M4L9K8J6H5",
    "AWS secret access key": "aws_secret" + "_access_key = " + repr(AWS_SECRET),
    "RSA private key": "-----BEGIN RSA " + "PRIVATE KEY-----",
    "OpenSSH private key": "-----BEGIN OPENSSH " + "PRIVATE KEY-----",
    "PGP private key block": "-----BEGIN PGP " + "PRIVATE KEY BLOCK-----",
    "service-account key": '{"type": "service_account", "private_'
    + 'key": "-----BEGIN '
    + 'PRIVATE KEY-----\\nMIIEv"}',
    "JSON web token": "eyJhbGciOiJIUzI1NiJ9"
    + ".eyJzdWIiOiIxMjM0NTY3ODkwIn0"
    + ".dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "GitHub token": FAKES["GitHub Token"],
}


def _entities(text: str) -> str:
    return "".join(c if c.isalnum() else f"&#x{ord(c):X};" for c in text)


def _traceback(secret: str) -> str:
    # IPython colours each token of a traceback line; the secret follows an escape code directly.
    return (
        "\x1b[0;31m---------------------------------------------------------------------------\x1b[0m\n"
        "\x1b[0;31mInvalidGrantError\x1b[0m  Traceback (most recent call last)\n"
        f'\x1b[0;32m----> 1\x1b[0;31m flow\x1b[38;5;241m.\x1b[39mfetch_token(code\x1b[38;5;241m=\x1b[39m\x1b[38;5;124m"{secret}"\x1b[39m)\n'
    )


# Each place, as a function from a secret to a notebook cell (with its outputs) or a text file's contents.
NOTEBOOK_PLACES = {
    "code cell": lambda s: nbformat.v4.new_code_cell(f"token = {s!r}"),
    "markdown cell": lambda s: nbformat.v4.new_markdown_cell(f"Paste this: {s}"),
    "stream output": lambda s: _with_output(nbformat.v4.new_output("stream", name="stdout", text=f"{s}\n")),
    "traceback (ANSI colours)": lambda s: _with_output(
        nbformat.v4.new_output(
            "error", ename="InvalidGrantError", evalue="", traceback=_traceback(s).splitlines()
        )
    ),
    "URL query, URL-encoded": lambda s: _text_output(
        f"https://localhost/?state=x&code={quote(s, safe='')}&scope=drive"
    ),
    "URL path": lambda s: _text_output(f"https://example.com/callback/{s}"),
    "URL-encoded twice": lambda s: _text_output(
        f"next=https%3A%2F%2Flocalhost%2F%3Fcode%3D{quote(quote(s, safe=''), safe='')}"
    ),
    "HTML entities": lambda s: _html_output(f"<p>code: {_entities(s)}</p>"),
    "base64 in an output": lambda s: _text_output(repr(base64.b64encode(s.encode()))),
    "cell metadata": lambda s: _with_metadata(s),
}
TEXT_PLACES = {
    ".py file": lambda s: f"import os\nTOKEN = {s!r}\n",
    ".md file": lambda s: f"# Notes\n\nUse {s} to log in.\n",
}
PLACES = [*NOTEBOOK_PLACES, *TEXT_PLACES]


def _with_output(output):
    cell = nbformat.v4.new_code_cell("run()")
    cell.outputs = [output]
    return cell


def _text_output(text):
    return _with_output(
        nbformat.v4.new_output("execute_result", data={"text/plain": text}, execution_count=1)
    )


def _html_output(text):
    return _with_output(nbformat.v4.new_output("display_data", data={"text/html": text}))


def _with_metadata(secret):
    cell = nbformat.v4.new_code_cell("print(1)")
    cell.metadata["note"] = secret
    return cell


def planted(folder: Path, shape: str, place: str) -> Path:
    secret = SHAPES[shape]
    if place in TEXT_PLACES:
        path = folder / f"planted{place.split()[0]}"
        path.write_text(TEXT_PLACES[place](secret))
        return path
    book = nbformat.v4.new_notebook()
    book.cells = [nbformat.v4.new_markdown_cell("# Training"), NOTEBOOK_PLACES[place](secret)]
    path = folder / "planted.ipynb"
    path.write_text(json.dumps(book))
    return path


# What counts as catching each shape: the finding that names it (detect-secrets' kind for the general shapes).
EXPECTED = {
    **{shape: {shape} for shape in list(SHAPES)[:5]},
    "AWS access key id": {"AWS Access Key"},
    # detect-secrets names a quoted 40-character secret after an "aws...key" keyword a secret keyword and a
    # high-entropy string (and an AWS key where the quotes are double).
    "AWS secret access key": {"AWS Access Key", "Secret Keyword", "Base64 High Entropy String"},
    **{
        shape: {"Private Key"}
        for shape in ("RSA private key", "OpenSSH private key", "PGP private key block")
    },
    "service-account key": {"Private Key"},
    "JSON web token": {"JSON Web Token"},
    "GitHub token": {"GitHub Token"},
}


def measured_catches(folder: Path) -> dict[str, dict[str, bool]]:
    """Whether the scan names each shape planted alone in each place."""
    return {
        shape: {
            place: bool(EXPECTED[shape] & {f.kind for f in scan_file(planted(folder, shape, place))})
            for place in PLACES
        }
        for shape in SHAPES
    }


def catches_table(catches: dict[str, dict[str, bool]]) -> str:
    lines = ["| shape | " + " | ".join(PLACES) + " | caught |", "|---|" + "---|" * len(PLACES) + "---:|"]
    for shape, row in catches.items():
        marks = " | ".join("yes" if row[place] else "**no**" for place in PLACES)
        lines.append(f"| {shape} | {marks} | {sum(row.values())} of {len(PLACES)} |")
    return "\n".join(lines)


def documented_table() -> str:
    text = (REPOSITORY / "docs" / "reliability.md").read_text()
    start, end = "<!-- credential-scan-table -->", "<!-- end credential-scan-table -->"
    return text[text.index(start) + len(start) : text.index(end)].strip()


def test_every_shape_in_every_place_is_caught_as_the_docs_say(tmp_path):
    catches = measured_catches(tmp_path)
    # The Google shapes, the likeliest leak in a Colab notebook, are caught everywhere.
    for shape in list(SHAPES)[:5]:
        assert all(catches[shape].values()), (shape, catches[shape])
    assert documented_table() == catches_table(catches), (
        "update docs/reliability.md: python tests/test_credentials.py"
    )


def test_nothing_is_reported_for_the_places_without_a_secret(tmp_path):
    for place in PLACES:
        if place in TEXT_PLACES:
            path = tmp_path / f"clean{place.split()[0]}"
            path.write_text(TEXT_PLACES[place]("hello"))
        else:
            book = nbformat.v4.new_notebook()
            book.cells = [NOTEBOOK_PLACES[place]("accuracy 0.91 after 10 epochs")]
            path = tmp_path / "clean.ipynb"
            path.write_text(json.dumps(book))
        kinds = {finding.kind for finding in scan_file(path)}
        # detect-secrets reports any quoted base64 string of 20 or more characters as high-entropy, whatever it
        # encodes (here plain words); that is its rule for every file, not a decoding of cifarlib's.
        allowed = {"Base64 High Entropy String"} if place == "base64 in an output" else set()
        assert kinds <= allowed, (place, kinds)


def test_a_file_that_is_not_utf8_is_an_error_not_a_pass(tmp_path, capsys):
    latin = tmp_path / "latin.ipynb"
    latin.write_bytes('{"cells": [], "metadata": {"author": "Jos\xe9"}}'.encode("latin-1"))
    with pytest.raises(UnscannableFile, match="latin.ipynb: not UTF-8 text"):
        scan_file(latin)
    assert main([str(latin)]) == 1
    assert "latin.ipynb: not UTF-8 text" in capsys.readouterr().out


def test_make_lint_runs_the_same_scan_as_pre_commit():
    makefile = (REPOSITORY / "Makefile").read_text()
    assert "cifarlib/credentials.py $$(git ls-files" in makefile


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        print(catches_table(measured_catches(Path(folder))))
