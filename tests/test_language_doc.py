"""Every example of docs/language.md builds, runs and fails as the document says (CPU only).

The conventions are stated at the top of the document's source:

- ```python blocks starting ``# doc: example`` are modules (``mypkg/kernels.py``) that build;
- ```python blocks starting ``# doc: run`` run after the nearest example above them, with its
  package importable, and their ``assert``s must hold;
- ```python blocks starting ``# doc: error`` fail to build (exit code 2), and every line of
  the ```text block right after them must appear in the diagnostics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpuaot.cli import main

DOC = Path(__file__).resolve().parents[1] / "docs" / "language.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
MARK = re.compile(r"# doc: (\w+)\n")


@dataclass
class Example:
    kind: str  # "example" or "error"
    line: int  # where the block starts in the document
    source: str
    runs: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)  # the lines an "error" block prints

    @property
    def id(self) -> str:
        return f"{self.kind}-line{self.line}"


def examples() -> list[Example]:
    text = DOC.read_text()
    blocks = [
        (m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(text)
    ]
    out: list[Example] = []
    for k, (lang, body, line) in enumerate(blocks):
        mark = MARK.match(body)
        if lang != "python" or mark is None:
            continue
        kind, source = mark.group(1), body  # the mark stays: line numbers match the doc
        if kind == "example":
            out.append(Example(kind, line, source))
        elif kind == "run":
            assert out and out[-1].kind == "example", f"line {line}: a run block with no example"
            out[-1].runs.append(source)
        elif kind == "error":
            nxt = blocks[k + 1] if k + 1 < len(blocks) else None
            assert nxt is not None and nxt[0] == "text", f"line {line}: no text block after it"
            expected = [ln for ln in nxt[1].splitlines() if ln.strip()]
            assert any(": error: " in ln for ln in expected), f"line {line}: shows no error"
            out.append(Example(kind, line, source, expected=expected))
        else:
            raise AssertionError(f"line {line}: unknown block mark '# doc: {kind}'")
    return out


EXAMPLES = examples()


def test_the_document_has_examples_of_every_kind():
    kinds = {e.kind for e in EXAMPLES}
    assert kinds == {"example", "error"}
    assert any(e.runs for e in EXAMPLES)


@pytest.mark.parametrize("ex", [e for e in EXAMPLES if e.kind == "example"], ids=lambda e: e.id)
def test_example_builds_and_runs(kit, tmp_path, monkeypatch, ex: Example):
    monkeypatch.delenv("GPUAOT_BUNDLE_PATH", raising=False)
    root = kit.write_package(tmp_path / "mypkg", {"kernels.py": ex.source})
    kit.build(root, cache_dir=tmp_path / "cache")
    kit.import_package(root, monkeypatch)
    try:
        for k, run in enumerate(ex.runs):
            code = compile(run, f"{DOC.name}:line{ex.line}:run{k}", "exec")
            exec(code, {"__name__": "__doc_example__"})
    finally:
        kit.unload("mypkg")


@pytest.mark.parametrize("ex", [e for e in EXAMPLES if e.kind == "error"], ids=lambda e: e.id)
def test_error_example_fails_with_the_message_shown(kit, tmp_path, monkeypatch, ex: Example):
    kit.write_package(tmp_path / "mypkg", {"kernels.py": ex.source})
    monkeypatch.chdir(tmp_path)  # diagnostics name files relative to the working directory
    result = CliRunner().invoke(
        main,
        [
            "build",
            "mypkg",
            "--no-gpu",
            "--out",
            str(tmp_path / "out"),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
    )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    printed = result.output.splitlines()
    for line in ex.expected:
        assert line in printed, result.output
