"""``hvl demo``: the model report, the comparison table and the module's place in the layout."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from hierarchical_vl.cli import main
from hierarchical_vl.demo import format_comparison_table, model_report

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "hierarchical_vl"


def test_model_report_of_the_tiny_preset():
    lines = model_report("tiny")
    assert lines[0].startswith("model preset 'tiny': d=16, 3 co-attention layers, 4 heads, task layers")
    assert lines[1] == "parameters per component:"
    total = next(line for line in lines if line.strip().startswith("total"))
    components = lines[2 : lines.index(total)]
    assert len(components) == 1 + 1 + 1 + 3 + 3  # words, BiLSTM, image, 3 layers, 3 decoders
    assert all(int(line.split()[-1].replace(",", "")) > 0 for line in components)
    assert "outputs on generated inputs:" in lines
    assert any(line.strip().startswith("vqa        layer 3  logits (2, 10)") for line in lines)
    assert lines[-1].startswith("save/reload (") and "weights identical = True" in lines[-1]


def test_hvl_demo_model_only_prints_the_report(capsys):
    assert main(["demo", "--model-only", "--preset", "tiny"]) == 0
    printed = capsys.readouterr().out.splitlines()
    report = model_report("tiny")
    assert printed[2:] == report[2:]  # the first line has the build time, the last the size and difference
    assert printed[0].split(" (built in")[0] == report[0].split(" (built in")[0]


def test_comparison_table():
    table = format_comparison_table(
        {
            "single-task": {"vqa/overall": 41.456, "grounding/r1": 20.0},
            "multi-task": {"vqa/overall": 43.0, "retrieval/rsum": 101.25},
        }
    )
    lines = table.splitlines()
    assert lines[0].split() == ["single-task", "multi-task"]
    assert lines[1].split() == ["VQA", "accuracy", "41.46", "43.00"]
    assert lines[7].split() == ["ICR", "rsum", "-", "101.25"]
    assert lines[8].split() == ["VG", "R@1", "20.00", "-"]
    assert len({len(line) for line in lines}) == 1  # aligned columns


def test_the_demo_is_one_command_module_and_training_imports_neither_it_nor_the_pipelines():
    assert not (PACKAGE / "training" / "demo_run.py").exists()
    for path in sorted((PACKAGE / "training").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
                assert not module.lstrip(".").startswith(("pipelines", "demo", "hierarchical_vl.pipelines")), (
                    f"{path.name} imports {module}"
                )
    code = (
        "import sys, hierarchical_vl.demo; "
        "print(sorted(m for m in sys.modules"
        " if m.startswith(('hierarchical_vl.training', 'hierarchical_vl.evaluation'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert result.stdout.strip() == "[]"  # training and evaluation are imported only when the full demo runs
