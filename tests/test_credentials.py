"""The credential scan: each token shape found anywhere in a notebook's JSON, URL-encoded too; ordinary text not.

The fake secrets are assembled from pieces at run time, so this file itself holds none for the scan to find.
"""

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from cifarlib.credentials import scan_file, scan_text

BODY = "0AeaYSHBx7Kq9Zt3LmN_wPv-2RsTuXy5"  # 32 token characters
FAKES = {
    "Google OAuth authorization code": "4" + "/" + BODY,
    "Google OAuth access token": "ya29" + "." + BODY,
    "Google OAuth refresh token": "1/" + "/" + BODY,
    "Google OAuth client secret": "GOCSPX" + "-" + BODY,
    "Google API key": "AI" + "za" + BODY + "abc",
    "client secret field": '"client' + '_secret": "x"',
    "private key": "-----BEGIN RSA " + "PRIVATE KEY-----",
    "GitHub token": "gh" + "p_" + BODY.replace("_", "a").replace("-", "b"),
}
REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("kind", FAKES)
def test_each_token_shape_is_found(kind):
    assert [found for found, _ in scan_text(f"pasted: {FAKES[kind]} here")] == [kind]


def test_url_encoded_and_camel_case_forms_are_found():
    code = FAKES["Google OAuth authorization code"].replace("/", "%2F")
    assert (
        scan_text(f"https://localhost/?state=x&code={code}&scope=drive")[0][0]
        == "Google OAuth authorization code"
    )
    assert scan_text('{"client' + 'Secret": "abc"}')[0][0] == "client secret field"
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
