"""The repository stands alone: no tracked file cites a document that is not in it.

Every tracked text file is scanned for two kinds of reference:

* names of notes that lived outside the repository (``FORBIDDEN``): a user's clone does not
  have them, so a citation of them leads nowhere;
* Markdown document paths (``docs/dps-wire.md``, ``README.md``, ``errors.md#anchor``): each must
  be a tracked ``.md`` file, found relative to the citing file's directory or to the repository
  root (a bare file name may also be the unique tracked document of that name), and an
  ``#anchor`` must be the GitHub anchor of one of that document's headings, as must the target
  of a link within a document (``[text](#anchor)``).

A file of another repository is cited as ``owner/repo:path`` (for example
``MicrosoftDocs/azure-docs:articles/iot-dps/how-to-verify-certificates.md``) or by URL; those
are not paths of this repository and are not checked. The vendored x509-limbo JSON and npm's
lock file are data, not prose, and are left out; so is this file, whose tests name bad
references on purpose.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import pytest

REPO = Path(__file__).resolve().parents[1]
THIS_FILE = PurePosixPath(Path(__file__).resolve().relative_to(REPO).as_posix())

# Assembled from parts so that this file does not itself contain the names it forbids.
FORBIDDEN = (
    "../" + "shared",
    "shared" + "/reference",
    "shared" + "/conformance",
    "/work" + "/shared",
    "dps" + "-api.md",
    "real" + "-clients.md",
    "perf" + "-baseline.md",
)

EXCLUDED = (  # fnmatch patterns over the whole path ("*" crosses "/")
    "tests/conformance/x509-limbo/*.json",  # the vendored vectors, used byte for byte
    "*package-lock.json",  # npm's lock files
)

# A path ending in .md, optionally with #anchor. It may not start right after a character that
# would make it part of a longer token: a URL ("https://host/x.md") or another repository's
# file ("owner/repo:path/x.md") is not a path of this repository.
MD_REFERENCE = re.compile(
    r"(?<![\w./:@%-])(?P<path>(?:[\w.-]+/)*[\w-][\w.-]*\.md)(?:#(?P<anchor>[\w-]+))?(?![\w/-])"
)
# A Markdown link to a heading of the same document: [text](#anchor).
SAME_DOCUMENT_LINK = re.compile(r"\]\(#(?P<anchor>[\w-]+)\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(?P<text>.+?)[ \t]*#*[ \t]*$")
FENCE = re.compile(r"^ {0,3}(```|~~~)")


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"<[^>]+>", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def heading_anchors(markdown: str) -> frozenset[str]:
    """Every heading anchor of a Markdown document (repeats get GitHub's -1, -2 suffixes)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    in_fence = False
    for line in markdown.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        match = None if in_fence else HEADING.match(line)
        if match is None:
            continue
        anchor = github_anchor(match["text"])
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        anchors.add(anchor if count == 0 else f"{anchor}-{count}")
    return frozenset(anchors)


def resolve(citing: str, path: str, documents: Mapping[str, frozenset[str]]) -> str | None:
    """The tracked document a path in ``citing`` names, or None."""
    base = PurePosixPath(citing).parent
    for candidate in (base / path, PurePosixPath(path)):
        parts: list[str] = []
        for part in candidate.parts:
            if part == "..":
                if not parts:
                    break
                parts.pop()
            elif part != ".":
                parts.append(part)
        else:
            name = "/".join(parts)
            if name in documents:
                return name
    if "/" not in path:
        same_name = [name for name in documents if PurePosixPath(name).name == path]
        if len(same_name) == 1:
            return same_name[0]
    return None


def find_problems(citing: str, text: str, documents: Mapping[str, frozenset[str]]) -> list[str]:
    """Every bad reference in ``text`` (the content of the tracked file ``citing``), as
    ``file:line: what is wrong``. ``documents`` maps each tracked .md path to its anchors."""
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{citing}:{number}"
        problems.extend(
            f"{where}: names {name!r}, which is not in the repository"
            for name in FORBIDDEN
            if name in line
        )
        for match in MD_REFERENCE.finditer(line):
            path, anchor = match["path"], match["anchor"]
            document = resolve(citing, path, documents)
            if document is None:
                problems.append(f"{where}: {path} is not a document of the repository")
            elif anchor is not None and anchor not in documents[document]:
                problems.append(f"{where}: {document} has no heading with anchor #{anchor}")
        if citing in documents:
            problems.extend(
                f"{where}: {citing} has no heading with anchor #{link['anchor']}"
                for link in SAME_DOCUMENT_LINK.finditer(line)
                if link["anchor"] not in documents[citing]
            )
    return problems


def tracked_files() -> list[str]:
    try:
        listing = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files cannot be listed")
    return [name for name in listing.decode().split("\0") if name]


def read_text(name: str) -> str | None:
    """The file's text, or None for a binary or missing file."""
    try:
        data = (REPO / name).read_bytes()
    except FileNotFoundError:  # deleted in the work tree, not yet in the index
        return None
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def is_excluded(name: str) -> bool:
    return name == str(THIS_FILE) or any(fnmatch.fnmatchcase(name, pattern) for pattern in EXCLUDED)


# --- the repository ------------------------------------------------------------------------------


def test_tracked_files_cite_only_what_the_repository_holds() -> None:
    texts = {name: read_text(name) for name in tracked_files() if not is_excluded(name)}
    documents = {
        name: heading_anchors(text)
        for name, text in texts.items()
        if name.endswith(".md") and text is not None
    }
    assert "README.md" in documents, "the scan found no documents: wrong directory?"
    problems = [
        problem
        for name, text in sorted(texts.items())
        if text is not None
        for problem in find_problems(name, text, documents)
    ]
    assert problems == [], "\n".join(problems)


# --- the scanner, on small synthetic texts -------------------------------------------------------

DOCUMENTS = {
    "README.md": heading_anchors("# devprov\n## A five-minute tour: proving possession of a CA\n"),
    "docs/dps-wire.md": heading_anchors(
        "# DPS\n## Service API\n### SAS tokens\n```\n## Not a heading\n```\n## Service API\n"
    ),
    "docs/errors.md": frozenset(),
}


@pytest.mark.parametrize(
    ("markdown", "anchors"),
    [
        pytest.param("## Service API: SAS tokens", {"service-api-sas-tokens"}, id="punctuation"),
        pytest.param("### `If-Match` and etags", {"if-match-and-etags"}, id="inline-code"),
        pytest.param("## Limits\n## Limits", {"limits", "limits-1"}, id="repeated"),
        pytest.param("## 1.8 ARM errors ##", {"18-arm-errors"}, id="closing-hashes"),
        pytest.param("```\n## in a fence\n```", set(), id="fenced"),
        pytest.param("#no-space\n    ## indented code", set(), id="not-headings"),
    ],
)
def test_heading_anchors(markdown: str, anchors: set[str]) -> None:
    assert heading_anchors(markdown) == anchors


@pytest.mark.parametrize(
    ("citing", "text"),
    [
        pytest.param("src/x.py", "# (docs/dps-wire.md#sas-tokens)", id="ok/anchor"),
        pytest.param("src/x.py", "see docs/dps-wire.md#service-api-1.", id="ok/repeated-heading"),
        pytest.param("docs/a.md", "[errors](errors.md)", id="ok/relative-to-file"),
        pytest.param("tests/t.py", 'DOC = ROOT / "docs" / "errors.md"', id="ok/unique-name"),
        pytest.param("src/x.py", "README.md#devprov", id="ok/root"),
        pytest.param(
            "docs/a.md",
            "MicrosoftDocs/azure-docs:articles/iot-dps/how-to-verify-certificates.md",
            id="ok/other-repository",
        ),
        pytest.param("docs/a.md", "<https://github.com/C2SP/x509-limbo/README.md>", id="ok/url"),
        pytest.param("docs/a.md", "shared access signatures; a dps-wire doc", id="ok/prose"),
        pytest.param("docs/dps-wire.md", "see [SAS](#sas-tokens)", id="ok/same-document"),
    ],
)
def test_find_problems_accepts(citing: str, text: str) -> None:
    assert find_problems(citing, text, DOCUMENTS) == []


@pytest.mark.parametrize(
    ("citing", "text", "problem"),
    [
        pytest.param(
            "src/x.py",
            "# (docs/dps-wire.md#sas-token)",
            "src/x.py:1: docs/dps-wire.md has no heading with anchor #sas-token",
            id="fail/anchor",
        ),
        pytest.param(
            "src/x.py",
            "see docs/dps-wire.md#service-api-2.",
            "src/x.py:1: docs/dps-wire.md has no heading with anchor #service-api-2",
            id="fail/repeated-heading",
        ),
        pytest.param(
            "docs/a.md",
            "[errors](../errors.md)",
            "docs/a.md:1: ../errors.md is not a document of the repository",
            id="fail/relative-to-file",
        ),
        pytest.param(
            "tests/t.py",
            'DOC = ROOT / "docs" / "error.md"',
            "tests/t.py:1: error.md is not a document of the repository",
            id="fail/unknown-name",
        ),
        pytest.param(
            "src/x.py",
            "\nREADME.md#not-a-heading",
            "src/x.py:2: README.md has no heading with anchor #not-a-heading",
            id="fail/root",
        ),
        pytest.param(
            "docs/dps-wire.md",
            "see [SAS](#sas-token)",
            "docs/dps-wire.md:1: docs/dps-wire.md has no heading with anchor #sas-token",
            id="fail/same-document",
        ),
        pytest.param(
            "docs/a.md",
            "articles/iot-dps/how-to-verify-certificates.md",
            "docs/a.md:1: articles/iot-dps/how-to-verify-certificates.md is not a document of "
            "the repository",
            id="fail/other-repository-unnamed",
        ),
        pytest.param(
            "docs/a.md",
            "<https://github.com/C2SP/x509-limbo/README.md> and " + FORBIDDEN[0] + "/x",
            f"docs/a.md:1: names {FORBIDDEN[0]!r}, which is not in the repository",
            id="fail/forbidden-path",
        ),
        *(
            pytest.param(
                "src/x.py",
                f"({name} section 4)",
                f"src/x.py:1: names {name!r}, which is not in the repository",
                id=f"fail/forbidden-{number}",
            )
            for number, name in enumerate(FORBIDDEN[1:4], start=1)
        ),
    ],
)
def test_find_problems_rejects(citing: str, text: str, problem: str) -> None:
    assert find_problems(citing, text, DOCUMENTS) == [problem]


@pytest.mark.parametrize("name", FORBIDDEN[4:])
def test_a_forbidden_document_is_reported_once_per_reason(name: str) -> None:
    problems = find_problems("src/x.py", f"({name} 2.2)", DOCUMENTS)
    assert problems == [
        f"src/x.py:1: names {name!r}, which is not in the repository",
        f"src/x.py:1: {name} is not a document of the repository",
    ]


def test_excluded_files() -> None:
    assert is_excluded("tests/conformance/x509-limbo/limbo.json")
    assert is_excluded("tests/interop/node/package-lock.json")
    assert is_excluded(str(THIS_FILE))
    assert not is_excluded("tests/conformance/x509-limbo/README.md")
    assert not is_excluded("tests/interop/node/package.json")
