"""The package's layout, read statically (``ast``, nothing imported): no file under ``extremeq/`` over
400 lines, no import cycle between its modules, and imports that run one way,

    ste -> quantizers, packing, data -> kernels, methods, optim -> nn, energy, retrieval -> summary
        -> train, inference -> sweep

(a group imports only groups of earlier tiers, never one of its own tier: kernels and packing know
nothing of the method registry, the layers or Flax models; train and inference do not import each
other). Nothing in the package imports ``experiments`` or ``configs``. Each check is run on a
fabricated tree too, so that it is seen to fail.
"""

import ast
import os
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "extremeq"
MAX_LINES = 400

# Tiers of the top-level groups (a module or sub-package of extremeq); a group may import the groups
# of earlier tiers only. The package's own __init__ is outside the graph (its one import, of
# extremeq.inference for the ``extremeq.export`` alias, happens on first attribute access).
TIERS = (
    ("ste",),
    ("quantizers", "packing", "data"),
    ("kernels", "methods", "optim"),
    ("nn", "energy", "retrieval"),
    ("summary",),
    ("train", "inference"),
    ("sweep",),
)
TIER = {group: i for i, groups in enumerate(TIERS) for group in groups}
OUTSIDE = ("experiments", "configs")


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file below ``root`` (a package directory)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = (root.name, *path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(name: str, mods) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str, path: Path, mods, *, top_level_only: bool) -> set[str]:
    """The modules of ``mods`` (and names under OUTSIDE) that ``module`` imports. ``from a import b``
    counts as an import of ``a.b`` when that is a module, else of ``a``. ``top_level_only``: only the
    statements that run on import (not those inside functions)."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # statements under if/try at module level run on import too
        nodes = [
            n
            for top in tree.body
            for n in ast.walk(top)
            if not isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        ]
    is_package = path.name == "__init__.py"
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in OUTSIDE:
                found.add(name)
            target = _resolve(name, mods)
            if target is not None and target != module:
                found.add(target)
    return found


def group(module: str) -> str | None:
    """The top-level module or sub-package of ``module``; the sweep tool's modules (sweep.py and its
    sweep_<part>.py, split for length) are one group."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    return "sweep" if parts[1].startswith("sweep_") else parts[1]


def long_files(root: Path) -> list[str]:
    return [
        f"{p.relative_to(root.parent)}: {n} lines"
        for p in sorted(root.rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    ]


def cycles(root: Path) -> list[list[str]]:
    """Import cycles among the modules' import-time imports (each cycle once, as a path a -> ... -> a)."""
    mods = modules(root)
    graph = {
        m: sorted(t for t in imports(m, p, mods, top_level_only=True) if t in mods and t != root.name)
        for m, p in mods.items()
    }
    found, state = [], {}

    def visit(m, stack):
        state[m] = "open"
        stack.append(m)
        for t in graph[m]:
            if state.get(t) == "open":
                found.append(stack[stack.index(t) :] + [t])
            elif t not in state:
                visit(t, stack)
        stack.pop()
        state[m] = "done"

    for m in graph:
        if m not in state:
            visit(m, [])
    return found


def wrong_way_imports(root: Path) -> list[str]:
    """Every import (lazy ones included) from a group to one of the same or a later tier, or of
    experiments/configs, as "module -> imported"."""
    mods = modules(root)
    bad = []
    for m, p in mods.items():
        g = group(m)
        if g is None:
            continue
        if g not in TIER:
            bad.append(f"{m}: group {g!r} has no tier in tests/test_layout.py TIERS; add it")
            continue
        for t in sorted(imports(m, p, mods, top_level_only=False)):
            tg = group(t) if t.split(".")[0] == root.name else None
            if t.split(".")[0] in OUTSIDE:
                bad.append(f"{m} -> {t} (the package never imports {t.split('.')[0]}/)")
            elif tg is not None and tg != g and (tg not in TIER or TIER[tg] >= TIER[g]):
                bad.append(f"{m} -> {t} ({g} is tier {TIER[g]}, {tg} tier {TIER.get(tg)})")
    return bad


def test_no_file_under_extremeq_is_over_400_lines():
    assert long_files(PACKAGE) == []


def test_no_import_cycle_in_the_package():
    assert cycles(PACKAGE) == []


def test_imports_run_one_way():
    assert wrong_way_imports(PACKAGE) == []


def test_every_group_of_the_package_has_a_tier():
    groups = {group(m) for m in modules(PACKAGE)} - {None}
    assert groups <= set(TIER), sorted(groups - set(TIER))


# --- the checks fail where they should: a fabricated package -------------------------------------
def _write(root: Path, files: dict[str, str]):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def fake(tmp_path):
    root = tmp_path / "extremeq"
    _write(
        root,
        {
            "__init__.py": "",
            "ste.py": "import jax\n",
            "packing.py": "from extremeq.ste import sign\n",
            "nn/__init__.py": "from extremeq.nn.layers import Q\n",
            "nn/layers.py": "from extremeq import ste\n",
        },
    )
    return root


def test_the_checks_pass_on_a_clean_tree(fake):
    assert (long_files(fake), cycles(fake), wrong_way_imports(fake)) == ([], [], [])


def test_a_cycle_is_found(fake):
    _write(
        fake,
        {
            "nn/policy.py": "from extremeq.nn import layers\n",
            "nn/layers.py": "import os\nif os:\n    from extremeq.nn.policy import x\n",
        },
    )
    assert cycles(fake) == [["extremeq.nn.layers", "extremeq.nn.policy", "extremeq.nn.layers"]]


def test_an_import_inside_a_function_is_not_a_cycle_but_must_still_run_one_way(fake):
    _write(fake, {"packing.py": "def f():\n    from extremeq.nn import layers\n"})
    assert cycles(fake) == []
    assert wrong_way_imports(fake) == ["extremeq.packing -> extremeq.nn.layers (packing is tier 1, nn tier 3)"]


def test_wrong_way_and_same_tier_imports_are_found(fake):
    _write(
        fake,
        {
            "kernels/__init__.py": "from ..methods import registry\n",
            "methods/registry.py": "",
            "methods/__init__.py": "",
            "train/__init__.py": "import experiments.quickstart\n",
        },
    )
    assert wrong_way_imports(fake) == [
        "extremeq.kernels -> extremeq.methods.registry (kernels is tier 2, methods tier 2)",
        "extremeq.train -> experiments.quickstart (the package never imports experiments/)",
    ]


def test_a_long_file_is_found(fake):
    _write(fake, {"big.py": "x = 1\n" * (MAX_LINES + 1)})
    assert long_files(fake) == [f"extremeq{os.sep}big.py: {MAX_LINES + 1} lines"]
