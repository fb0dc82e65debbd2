"""The examples in README.md and docs/*.md, run as written against the local stack, and every relative link in
those pages checked, so a changed route, field or heading breaks the build instead of the reader.

A fenced block whose info string is `bash run` or `python run` is an example to run: each is its own test,
named by file and line (`README.md:41`). They run against the whole local stack as `python -m
local.stack --require-api-key` serves it (a fresh process: the emulator, moto server, the queue triggers, the batch poller
and the gateway with the authorizer, each on a free loopback port), in a temporary directory, with FM_URL (the
stack's base URL), FM_KEY (a caller key) and FM_ADMIN_KEY (the key FM_ADMIN_CALLER names) in the environment.
Shell runs with `bash -euo pipefail`, Python with this venv's python; an example passes when it exits 0, and
a `curl` in one must fail on an HTTP error (`-f`), so a 4xx or 5xx fails the example. `bash cloud` and `python
cloud` mark examples that need the real cloud: they are reported as skipped, with the reason. A shell or
Python fence that calls the API without one of the marks fails `test_every_api_example_is_marked`.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT

# one worker runs the whole file, so one stack serves every example
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("docs-examples")]

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKS = {"run", "cloud"}
LANGUAGES = {"bash": "bash", "sh": "bash", "shell": "bash", "console": "bash", "python": "python", "py": "python"}
# what makes a fence an API example: it calls the API (or a client of it)
CALLS = re.compile(r"\bcurl\s|\b(?:Async)?OpenAI\(|\bChatOpenAI\(|\bOpenAIEmbeddings\(|\bfrom openai import|"
                   r"\bimport openai\b|\brequests\.(?:get|post|put|patch|delete|request)\(|\bhttpx\.|urllib\.request|"
                   r"\blocal\.batch_cli\b|\$FM_URL|FM_URL\"\]")
CALLER_KEY = "fmk_docs-caller-key-0123456789abcdef"
ADMIN_KEY = "fmk_docs-admin-key-0123456789abcdef0"


@dataclass(frozen=True)
class Fence:
    page: Path
    line: int  # of the opening fence, 1-based
    info: str
    body: str

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def language(self) -> str | None:
        words = self.info.split()
        return LANGUAGES.get(words[0].lower()) if words else None

    @property
    def mark(self) -> str | None:
        words = self.info.split()
        return words[1] if len(words) > 1 and words[1] in MARKS else None


def fences(page: Path) -> list[Fence]:
    """The fenced code blocks of a Markdown page (``` or ~~~, as CommonMark opens and closes them)."""
    found: list[Fence] = []
    opening: tuple[int, str, str] | None = None  # line, fence, info
    body: list[str] = []
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.lstrip(" ")
        if opening is None:
            match = re.match(r"(`{3,}|~{3,})(.*)$", stripped)
            if match and len(line) - len(stripped) <= 3 and not (match.group(1)[0] == "`" and "`" in match.group(2)):
                opening, body = (number, match.group(1), match.group(2).strip()), []
            continue
        if stripped.startswith(opening[1][0] * len(opening[1])) and not stripped.strip(opening[1][0]).strip():
            found.append(Fence(page, opening[0], opening[2], "\n".join(body) + "\n"))
            opening = None
        else:
            body.append(line)
    assert opening is None, f"{page.relative_to(ROOT)}:{opening[0]}: a fence is never closed"
    return found


ALL_FENCES = [fence for page in PAGES for fence in fences(page)]
EXAMPLES = [fence for fence in ALL_FENCES if fence.language and fence.mark]


def test_the_pages_have_examples_to_run() -> None:
    """The collection itself: the README's three dialects are there, and nothing is lost to a parsing slip."""
    assert (ROOT / "docs").is_dir() and len(PAGES) > 5
    readme = [fence for fence in EXAMPLES if fence.page.name == "README.md" and fence.mark == "run"]
    assert any("curl" in fence.body for fence in readme)
    assert any("chat.completions" in fence.body for fence in readme)
    assert any("responses.create" in fence.body for fence in readme)
    assert sum(fence.mark == "run" for fence in EXAMPLES) >= 15


def test_the_fence_parser_reads_marks_and_bodies(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("text\n\n```bash run\ncurl -fsS \"$FM_URL/v1/models\"\n```\n\n````python cloud\nx = 1\n```\n"
                    "y = 2\n````\n\n```sh\ncurl http://example\n```\n~~~\nplain\n~~~\n", encoding="utf-8")
    found = fences(page)
    assert [(f.line, f.language, f.mark) for f in found] == [(3, "bash", "run"), (7, "python", "cloud"),
                                                             (13, "bash", None), (16, None, None)]
    assert found[1].body == "x = 1\n```\ny = 2\n"
    assert [f.line for f in found if unmarked_call(f)] == [13]


def unmarked_call(fence: Fence) -> bool:
    """A shell or Python fence (or one with no language at all) that calls the API but is neither run nor cloud."""
    language_or_none = fence.language is not None or not fence.info
    return language_or_none and fence.mark is None and bool(CALLS.search(fence.body))


def test_every_api_example_is_marked() -> None:
    unmarked = [fence.id for fence in ALL_FENCES if unmarked_call(fence)]
    assert not unmarked, ("these examples call the API but are marked neither `run` (the tests run them) nor "
                          f"`cloud` (they need the real cloud): {unmarked}")


def test_every_curl_in_an_example_fails_on_an_http_error() -> None:
    """`curl -s` exits 0 on a 404 or a 500; an example the tests run must not pass on one."""
    lenient = []
    for fence in EXAMPLES:
        if fence.language != "bash":
            continue
        joined = fence.body.replace("\\\n", " ")
        for match in re.finditer(r"\bcurl\b([^\n]*)", joined):
            if not re.search(r"(?:^|\s)(?:-[A-Za-z]*f[A-Za-z]*|--fail(?:-with-body)?)(?=\s|$)", match.group(1)):
                lenient.append(fence.id)
    assert not lenient, f"use curl -fsS (or --fail) in: {lenient}"


# --- running the examples ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    url: str
    env: dict[str, str]


def _client_env() -> dict[str, str]:
    """This process's environment without anything that would point a client or the stack elsewhere."""
    dropped = ("YC_", "FM_", "AWS_", "OPENAI_", "LANGCHAIN_", "LANGSMITH_")
    return {k: v for k, v in os.environ.items() if not k.startswith(dropped) and k != "DOCAPI_ENDPOINT"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`python -m local.stack --require-api-key` (`make run` with the key check) in a process of its own, every server on a free port (read from what it
    prints), two caller keys (one of them the admin), and the batch poller every 0.5 s."""
    out = tmp_path_factory.mktemp("docs-stack") / "stack.log"
    keys = f"docs:{hashlib.sha256(CALLER_KEY.encode()).hexdigest()},admin:{hashlib.sha256(ADMIN_KEY.encode()).hexdigest()}"
    env = {**_client_env(), "CALLER_KEY_SHA256": keys, "FM_ADMIN_CALLER": "admin", "POLLER_INTERVAL_S": "0.5",
           "LOG_LEVEL": "WARN", "PYTHONUNBUFFERED": "1"}
    with out.open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "local.stack", "--require-api-key", "--port", "0",
                                    "--emulator-port", "0", "--moto-port", "0"],
                                   cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        url = _wait_for_url(process, out)
        _wait_until_serving(url, process, out)
        yield Stack(url, {**_client_env(), "FM_URL": url, "FM_KEY": CALLER_KEY, "FM_ADMIN_KEY": ADMIN_KEY,
                          "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
                          "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_url(process: subprocess.Popen[str], out: Path) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"^API on (http://127\.0\.0\.1:\d+)", out.read_text(), re.M)
        if found:
            return found.group(1)
        assert process.poll() is None, f"the stack exited before serving:\n{out.read_text()}"
        time.sleep(0.1)
    raise AssertionError(f"the stack printed no URL in 60 s:\n{out.read_text()}")


def _wait_until_serving(url: str, process: subprocess.Popen[str], out: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            answer = requests.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {CALLER_KEY}"}, timeout=5)
            assert answer.status_code == 200, answer.text
            return
        except requests.ConnectionError:
            assert process.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.1)


@pytest.mark.parametrize("example", EXAMPLES, ids=[fence.id for fence in EXAMPLES])
def test_example(example: Fence, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if example.mark == "cloud":
        pytest.skip(f"{example.id} needs the real cloud ({example.info}): not run against the local stack")
    stack: Stack = request.getfixturevalue("stack")
    if example.language == "bash":
        command = ["bash", "-euo", "pipefail", "-c", example.body]
    else:
        script = tmp_path / "example.py"
        script.write_text(example.body, encoding="utf-8")
        command = [sys.executable, str(script)]
    done = subprocess.run(command, cwd=tmp_path, env=stack.env, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, (f"{example.id} exited {done.returncode}\n--- example ---\n{example.body}"
                                  f"--- stdout ---\n{done.stdout[-4000:]}\n--- stderr ---\n{done.stderr[-4000:]}")


# --- links -----------------------------------------------------------------------------------------------

LINK = re.compile(r"(?<!\\)\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def prose(page: Path) -> list[tuple[int, str]]:
    """The page's lines outside fenced code, each with its inline code spans blanked out."""
    code = {line for fence in fences(page) for line in range(fence.line, fence.line + fence.body.count("\n") + 2)}
    lines = page.read_text(encoding="utf-8").splitlines()
    return [(number, re.sub(r"(`+).*?\1", "", line)) for number, line in enumerate(lines, 1) if number not in code]


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces to hyphens, -1, -2 on repeats."""
    seen: dict[str, int] = {}
    found = set()
    code = {line for fence in fences(page) for line in range(fence.line, fence.line + fence.body.count("\n") + 2)}
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        heading = re.match(r" {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading or number in code:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.group(1))
        slug = re.sub(r"[^\w\- ]", "", text.replace("`", "").lower()).replace(" ", "-")
        found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return found


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    broken = []
    for number, line in prose(page):
        for target in LINK.findall(line):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not checked offline
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(root)}:{number}: {target}"
            if not resolved.exists():
                broken.append(f"{where} (no such file)")
                continue
            if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{where} (no heading with that anchor)")
    return broken


def test_the_link_checker_finds_broken_links(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## What `terraform/` creates\n\n## Twice\n\n## Twice\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](other.md#what-terraform-creates) [ok](other.md#twice-1) [ok](#here) [ok](https://x.y/z)\n"
                    "# Here\n[bad](missing.md) [bad](other.md#nowhere) `[code](missing.md)`\n"
                    "```text\n[in a fence](missing.md)\n```\n")
    assert broken_links(page, root=tmp_path) == ["page.md:3: missing.md (no such file)",
                                                 "page.md:3: other.md#nowhere (no heading with that anchor)"]


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    assert not broken_links(page)


def test_every_docs_page_is_reachable_from_the_readme_in_one_click() -> None:
    readme = " ".join(line for _, line in prose(ROOT / "README.md"))
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in LINK.findall(readme)}
    assert not [page.name for page in PAGES[1:] if page.resolve() not in linked]
