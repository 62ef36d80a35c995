"""Issue 20: the package's shape. No import circle, no module of 500 lines or more, a loop
a learner reads in one sitting, and the old import paths still work."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nvp_edu"


def _module_name(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def _imports(path: Path, modules: set[str]) -> set[str]:
    """nvp_edu modules that ``path`` imports anywhere (functions included), except under
    ``if TYPE_CHECKING:`` (annotations only: nothing is imported at run time)."""
    name = _module_name(path)
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree)
            if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"
            for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            target = ".".join(base[: len(base) - node.level + 1] + [node.module or ""]) \
                if node.level else node.module
            target = target.rstrip(".")
            candidates = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        found |= {c for c in candidates if c in modules and c != name}
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circle():
    files = list(PACKAGE.rglob("*.py"))
    modules = {_module_name(f) for f in files}
    graph = {_module_name(f): _imports(f, modules) for f in files}
    assert graph["nvp_edu.nets"] == set()  # it imported coupling, which imports it
    assert _cycles(graph) == []


def test_no_module_reaches_500_lines_and_the_loop_fits_one_sitting():
    sizes = {str(f.relative_to(ROOT)): len(f.read_text().splitlines())
             for f in PACKAGE.rglob("*.py")}
    assert max(sizes.values()) < 500, max(sizes.items(), key=lambda kv: kv[1])
    assert sizes["nvp_edu/training/loop.py"] <= 300
    assert sizes["nvp_edu/train.py"] < 80  # a front door, not a second trainer


@pytest.mark.parametrize("module, names", [
    ("nvp_edu.train", "Config TrainResult Trainer train main parse_args read_metrics "
     "to_model_space from_model_space nll_nats model_bpd bits_per_dim build_model load_data "
     "split_validation recalibrate_batch_norm recalibration_images NonFiniteLossError _Dist dequantize "
     "_validate _to_json _truncate_metrics LOGIT_ALPHA PRESETS"),
    ("nvp_edu.toys", "TOYS Moons Circles Standardize StandardizedModel fit fit_density nll "
     "get_toy make_splits gap_fraction fit_baselines"),
    ("nvp_edu.mask_study", "top_half_mask train_mask_study"),
])
def test_the_old_import_paths_still_work(module, names):
    imported = __import__(module, fromlist=["_"])
    assert [n for n in names.split() if not hasattr(imported, n)] == []
