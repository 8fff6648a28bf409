"""``hvl demo``: the model report, the Table-1 runs of the demo configuration and the module's place in the layout."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from hierarchical_vl.cli import main
from hierarchical_vl.demo import model_report

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


def test_the_demo_table_is_table1_of_the_demo_configuration_within_its_update_budget():
    from hierarchical_vl.training.arguments import load_training_arguments
    from hierarchical_vl.training.experiments import table1_plan, updates_per_task

    base = load_training_arguments("demo")
    plan = table1_plan(base)
    assert [run.name for run in plan] == [
        "VQA",
        "ICR",
        "VG",
        "VQA+ICR",
        "VQA+VG",
        "ICR+VG",
        "VQA+ICR+VG",
        "VQA (matched)",
        "ICR (matched)",
        "VG (matched)",
    ]
    assert plan[6].updates == updates_per_task(base)  # the all-task run is the demo configuration itself
    # The ten runs together stay within a budget that keeps `make demo` within a few minutes on a CPU while VQA
    # gets the updates it needs to learn beyond the prior (about 800 per run on the demo corpus).
    assert sum(sum(run.updates.values()) for run in plan) <= 6500


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
