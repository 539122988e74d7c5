"""Where the time of one CIFAR ResNet train step goes on this machine (issue 18, item 1).

Compiles the real jitted step of ``experiments/bench_train.py`` with XLA's HLO dump switched on,
runs ``--steps`` steps under ``jax.profiler.trace`` and sums the per-op (per-thunk) times of the
trace. Every op of the optimized HLO is put in one bucket, from the JAX source its metadata points
at (``stack_frame_id`` -> function names) and from its shapes:

* conv forward / conv backward-input / conv backward-filter (the filter gradient is a dot of two
  transposed copies on XLA:CPU; its transposes are counted in "transpose/copy"),
* transpose/copy (XLA's layout changes; on the CPU these fusions also recompute the BatchNorm +
  ReLU + residual chain that feeds them),
* batch norm (statistics and normalize, forward and backward), relu/residual elementwise,
* optimizer (optax), augmentation (gather + crop + flip), loss/head, other.

    python experiments/profile_train.py --method fp --steps 5
    python experiments/profile_train.py --method fp --xla-flags "--xla_cpu_use_onednn=true"
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import shutil
import sys
import tempfile


def _parse_hlo(text: str):
    """{instruction name: (opcode-ish, output shape, op_name, function names on its stack)}."""
    funcs, locs, frames = {}, {}, {}
    section = None
    for line in text.splitlines():
        if line in ("FileNames", "FunctionNames", "FileLocations", "StackFrames"):
            section = line
            continue
        if not line.strip():
            section = None
            continue
        if section == "FunctionNames":
            i, name = line.split(" ", 1)
            funcs[int(i)] = name.strip('"')
        elif section == "FileLocations":
            i, rest = line.split(" ", 1)
            locs[int(i)] = int(re.search(r"function_name_id=(\d+)", rest).group(1))
        elif section == "StackFrames":
            i, rest = line.split(" ", 1)
            m = re.search(r"file_location_id=(\d+) parent_frame_id=(\d+)", rest)
            frames[int(i)] = (int(m.group(1)), int(m.group(2)))

    def stack(fid):
        names, seen = [], set()
        while fid in frames and fid not in seen:
            seen.add(fid)
            loc, parent = frames[fid]
            names.append(funcs.get(locs.get(loc), "?"))
            fid = parent
        return names

    entry = text[text.index("\nENTRY") :]
    ops = {}
    for m in re.finditer(r"^\s+(?:ROOT )?%(\S+) = (\S+?)\[([^\]]*)\]\S* (\S+?)\((.*)$", entry, re.MULTILINE):
        name, _dtype, shape, opcode, rest = m.groups()
        op_name = re.search(r'op_name="([^"]*)"', rest)
        frame = re.search(r"stack_frame_id=(\d+)", rest)
        kind = re.search(r'"kind":"(\w+)"', rest)
        ops[name] = dict(
            opcode=opcode,
            shape=tuple(int(d) for d in shape.split(",") if d.strip().isdigit()),
            op_name=op_name.group(1) if op_name else "",
            stack=stack(int(frame.group(1))) if frame else [],
            kind=kind.group(1) if kind else "",
        )
    return ops


def bucket(name: str, op: dict | None) -> str:
    if op is None:
        return "other (not in the entry computation)"
    stack, op_name, shape = op["stack"], op["op_name"], op["shape"]
    backward = "transpose(" in op_name
    is_conv = "conv_general_dilated" in op_name or op["opcode"] == "convolution"
    if name.startswith("transpose") or op["opcode"] in ("copy", "transpose") or name.startswith("copy"):
        return "transpose/copy (layout; recomputes BN/ReLU chains)"
    if op["kind"] == "__ynn_fusion" and not op_name and len(shape) == 4 and shape[1:3] in ((3, 3), (1, 1)):
        return "conv backward-filter (dot)"
    if is_conv:
        return "conv backward-input" if backward else "conv forward"
    if any(s in ("random_crop", "random_flip", "augment_batch", "augment_params", "normalize") for s in stack):
        return "augmentation (gather, crop, flip, normalize)"
    if any(s.startswith(("chain.", "trace.", "masked.", "add_decayed", "apply_updates", "scale_by")) for s in stack):
        return "optimizer (SGD momentum, weight decay)"
    if any(s in ("BatchNorm.__call__", "_compute_stats", "_normalize") for s in stack):
        return "batch norm " + ("backward" if backward else "forward")
    if any(s in ("cross_entropy", "cross_entropy_per_example", "Linear.__call__") for s in stack):
        return "loss + head"
    if "gather" in name or "take" in op_name:
        return "augmentation (gather, crop, flip, normalize)"
    if len(shape) == 4 and shape[0] >= 8:
        return "elementwise on activations (ReLU, residual, pad)" + (" bwd" if backward else "")
    return "other small ops"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="fp")
    p.add_argument("--model", default="resnet20")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--xla-flags", default="", help="extra XLA_FLAGS for this run")
    p.add_argument("--top", type=int, default=15, help="also list the slowest single ops")
    p.add_argument("--conv", default="xla", help="conv formulation of experiments/proto_conv_train.py")
    args = p.parse_args(argv)
    dump = tempfile.mkdtemp(prefix="xla_dump_")
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_dump_to={dump} --xla_dump_hlo_as_text " + args.xla_flags
    ).strip()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import jax
    from bench_train import build_step, machine_info

    if args.conv == "xla":
        run, _ = build_step(args.method, args.model, args.batch)
    else:
        from proto_conv_train import build

        run, _ = build(args.conv, args.method, args.batch)
    for _ in range(3):
        run()
    hlo = sorted(glob.glob(f"{dump}/*jit_in_memory_train_step.cpu_after_optimizations.txt"))[-1]
    ops = _parse_hlo(open(hlo).read())
    trace_dir = tempfile.mkdtemp(prefix="trace_")
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
        for _ in range(args.steps):
            run()
    events = json.load(gzip.open(glob.glob(f"{trace_dir}/**/*.trace.json.gz", recursive=True)[0]))
    events = events["traceEvents"] if isinstance(events, dict) else events
    per_op = collections.Counter()
    wall = 0.0
    for e in events:
        if e.get("ph") != "X":
            continue
        if e["name"] == "ThunkExecutor::Execute (wait for completion)":
            wall += e["dur"]
        elif e["name"] in ops:
            per_op[e["name"]] += e["dur"]
    shutil.rmtree(dump, ignore_errors=True)
    shutil.rmtree(trace_dir, ignore_errors=True)
    buckets = collections.Counter()
    for name, us in per_op.items():
        buckets[bucket(name, ops.get(name))] += us
    total = sum(buckets.values())
    n = args.steps
    print(
        f"{args.model} {args.method}, conv {args.conv}, batch {args.batch}, {n} profiled steps; XLA_FLAGS extra: "
        f"{args.xla_flags or '(none)'}\n{machine_info()}\n"
    )
    print(
        f"step wall time (thunk executor, median-free mean): {wall / n / 1e3:.1f} ms; "
        f"sum of op times: {total / n / 1e3:.1f} ms\n"
    )
    print("| bucket | ms / step | share |\n| --- | ---: | ---: |")
    for b, us in buckets.most_common():
        print(f"| {b} | {us / n / 1e3:.1f} | {us / total:.0%} |")
    print(f"\nslowest {args.top} ops:\n\n| op | bucket | output shape | ms / step |\n| --- | --- | --- | ---: |")
    for name, us in per_op.most_common(args.top):
        op = ops[name]
        print(f"| {name} | {bucket(name, op)} | {list(op['shape'])} | {us / n / 1e3:.1f} |")


if __name__ == "__main__":
    main()
