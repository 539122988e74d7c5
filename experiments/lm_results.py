"""Ternary language models on tiny Shakespeare: the README table, loss curves, samples, decode speed.

    python experiments/lm_results.py --root runs            # trains what is missing, one run at a time
    python experiments/lm_results.py --root runs --no-train # only reads finished runs

For each variant of ``configs/shakespeare_char.py`` (fp, bitnet, bitnet_1bit) it runs (or resumes)
``python -m extremeq.train --config configs/shakespeare_char.py:<v> --workdir <root>/shakespeare_<v>``,
then reads ``metrics.jsonl`` and the last checkpoint, and writes

* ``results/shakespeare_char.md``: validation loss (whole split, non-overlapping 64-character
  windows), perplexity, median training step, wall time, file sizes, decode tokens/s, whether greedy
  decoding from the packed file equals the training graph for 500 tokens, machine and versions.
  Only the text between the ``BEGIN`` and ``END`` marker comments is rewritten; the hand-written
  notes before and after them are kept (:func:`splice_generated`);
* ``results/shakespeare_char_loss.png``: validation (and training) loss against the step;
* ``results/shakespeare_char_samples.md``: a sample of each model (temperature 0.8, top-k 20).

Optional: ``--bench-steps N`` times N training steps of the float and the ternary model interleaved
(same load on both, so their ratio is fair on a shared machine); ``--large`` decodes a ~85M-parameter
random-weight GPT float vs packed, where weight bytes dominate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from extremeq.inference.lm import export_lm
from extremeq.nn.generate import generate
from extremeq.nn.gpt import GPT
from extremeq.train.lm import load_trained_gpt
from extremeq.train.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("fp", "bitnet", "bitnet_1bit")
LABELS = {"fp": "FP (float32)", "bitnet": "BitNet b1.58 (ternary)", "bitnet_1bit": "BitNet (1-bit)"}
PROMPT = "ROMEO:\n"
NANOGPT = {"val_whole_split": 1.898, "val_20_batches": 1.886, "step_ms": 54.2, "wall_s": 119.9}
# The part of results/shakespeare_char.md that write_report rewrites lies between these two lines.
BEGIN = "<!-- BEGIN written by experiments/lm_results.py: text outside BEGIN/END is kept on a rerun -->"
END = "<!-- END written by experiments/lm_results.py -->"


def run_training(root: Path, variant: str, prefix: str = "shakespeare_") -> Path:
    workdir = root / f"{prefix}{variant}"
    if (workdir / "final.json").is_file():
        return workdir
    cmd = [
        sys.executable,
        "-m",
        "extremeq.train",
        "--config",
        f"configs/shakespeare_char.py:{variant}",
        "--workdir",
        str(workdir),
    ]
    print("running", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return workdir


def decode_rate(module, prompt, n: int, repeats: int = 3) -> float:
    """Tokens/s of greedy decoding (batch 1), median of ``repeats`` after a warm-up run."""
    generate(module, prompt, n)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        generate(module, prompt, n)
        times.append(time.perf_counter() - t0)
    return n / float(np.median(times))


def float_file_bytes(model) -> int:
    arrays = {
        "/".join(map(str, p)): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))
    }
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "f.npz")
        np.savez(path, **arrays)
        return os.path.getsize(path)


def bench_steps(n: int, root: Path) -> dict:
    """Median wall ms per training step of the fp and bitnet configs, steps interleaved."""
    import optax

    from extremeq.data.text import load_text, sample_windows
    from extremeq.train.config import load_config_file
    from extremeq.train.lm import build_gpt, make_optimizer, token_cross_entropy

    ds = load_text()
    tokens = jnp.asarray(ds.train)
    steps = {}
    for v in ("fp", "bitnet", "bitnet_1bit"):
        c = load_config_file(f"{ROOT}/configs/shakespeare_char.py:{v}")
        graphdef, params = nnx.split(build_gpt(c.model, ds.vocab_size, 0), nnx.Param)
        tx, _ = make_optimizer(c.optimizer, c.max_steps)

        def step(p, o, i, graphdef=graphdef, tx=tx, c=c):
            x, y = sample_windows(jax.random.fold_in(jax.random.key(0), i), tokens, c.batch_size, c.model.block_size)
            loss, g = jax.value_and_grad(lambda p: jnp.mean(token_cross_entropy(nnx.merge(graphdef, p)(x), y)))(p)
            u, o = tx.update(g, o, p)
            return optax.apply_updates(p, u), o, loss

        steps[v] = [jax.jit(step), params, tx.init(params)]
    times = {v: [] for v in steps}
    for i in range(n + 5):
        for v, s in steps.items():
            t0 = time.perf_counter()
            s[1], s[2], loss = s[0](s[1], s[2], i)
            loss.block_until_ready()
            if i >= 5:
                times[v].append(1000 * (time.perf_counter() - t0))
    return {v: float(np.median(t)) for v, t in times.items()}


def large_decode(n_tokens: int = 16) -> dict:
    """~85M parameters (12 layers, width 768, 12 heads): float vs packed ternary decode tokens/s."""
    model = GPT(65, block_size=256, num_layers=12, num_heads=12, width=768, linear="bitnet", rngs=nnx.Rngs(0))
    fp = GPT(65, block_size=256, num_layers=12, num_heads=12, width=768, linear="fp", rngs=nnx.Rngs(0))
    packed = export_lm(model)
    params = sum(np.size(v) for v in jax.tree_util.tree_leaves(nnx.state(fp, nnx.Param)))
    prompt = np.zeros(8, np.int32)
    return {
        "params": int(params),
        "fp": decode_rate(fp, prompt, n_tokens, 2),
        "bitnet_training_graph": decode_rate(model, prompt, n_tokens, 2),
        "bitnet_packed": decode_rate(packed.module, prompt, n_tokens, 2),
    }


def plot(rows: dict, path: Path, budget_steps: int = 2000):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for v, color in zip(VARIANTS, ("black", "tab:blue", "tab:red")):
        r = rows.get(v)
        if not r:
            continue
        steps = [x["step"] for x in r]
        ax.plot(steps, [x["val_loss"] for x in r], color=color, marker="o", ms=3, label=f"{LABELS[v]} validation")
        ax.plot(steps, [x["train_loss"] for x in r], color=color, ls="--", alpha=0.6, label=f"{LABELS[v]} train")
    ax.axhline(NANOGPT["val_whole_split"], color="gray", ls=":", label="nanoGPT float, whole split (1.898)")
    ax.set_xlabel("step (batch 12 x 64 characters)")
    ax.set_ylabel("loss (nats / character)")
    ax.set_ylim(1.4, 3.0)
    budget = "nanoGPT CPU budget" if budget_steps == 2000 else f"{budget_steps:,} steps"
    ax.set_title(f"tiny Shakespeare, 4 x 128 GPT, {budget}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="runs", help="folder of the run directories")
    ap.add_argument("--out", default=str(ROOT / "results"))
    ap.add_argument("--no-train", action="store_true", help="only read finished runs")
    ap.add_argument("--decode-tokens", type=int, default=500)
    ap.add_argument("--bench-steps", type=int, default=0)
    ap.add_argument("--large", action="store_true")
    ap.add_argument("--runs-prefix", default="shakespeare_", help="run directories are <root>/<prefix><variant>")
    ap.add_argument(
        "--name", default="shakespeare_char", help="output files <out>/<name>.md, <name>_loss.png, <name>_samples.md"
    )
    args = ap.parse_args(argv)
    root, out = Path(args.root), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, finals, models, ds = {}, {}, {}, None
    for v in VARIANTS:
        workdir = root / f"{args.runs_prefix}{v}"
        if not args.no_train:
            run_training(root, v, args.runs_prefix)
        if not (workdir / "final.json").is_file():
            print(f"{workdir}: no finished run, skipped")
            continue
        rows[v] = read_metrics(str(workdir))
        finals[v] = json.loads((workdir / "final.json").read_text())
        models[v], ds = load_trained_gpt(str(workdir))
    if not models:
        raise SystemExit(f"no finished runs under {root}")
    steps = max(f["step"] for f in finals.values())
    plot(rows, out / f"{args.name}_loss.png", steps)
    prompt = ds.encode(PROMPT)
    table, samples = [], []
    for v, model in models.items():
        f = finals[v]
        float_bytes = float_file_bytes(model)
        info = {
            "variant": v,
            "val_loss": f["val_loss"],
            "ppl": f["val_perplexity"],
            "step_ms": f["median_step_time_ms"],
            "wall_s": rows[v][-1]["elapsed_s"],
            "steps": f["step"],
            "float_file": float_bytes,
            "tok_s_train_graph": decode_rate(model, prompt, args.decode_tokens),
        }
        if v != "fp":
            packed = export_lm(model)
            with tempfile.TemporaryDirectory() as d:
                info["packed_file"] = packed.save(os.path.join(d, "m.npz"))
            sizes = packed.layer_sizes()
            info["layer_ratio"] = sum(s[2] for s in sizes) / sum(s[1] for s in sizes)
            info["tok_s_packed"] = decode_rate(packed.module, prompt, args.decode_tokens)
            a = generate(model, prompt, 500)
            b = generate(packed.module, prompt, 500)
            same = a[len(prompt) :] == b[len(prompt) :]
            info["greedy_equal"] = int(np.argmin(same)) if not same.all() else 500
        text = ds.decode(generate(model, prompt, 300, temperature=0.8, top_k=20, key=jax.random.key(0)))
        samples.append(f"### {LABELS[v]} (validation loss {f['val_loss']:.3f})\n\n```\n{text}\n```\n")
        table.append(info)
        print(json.dumps(info), flush=True)
    extra = {}
    if args.bench_steps:
        extra["bench"] = bench_steps(args.bench_steps, root)
        print("interleaved step ms", extra["bench"], flush=True)
    if args.large:
        extra["large"] = large_decode()
        print("large", extra["large"], flush=True)
    write_report(out, table, samples, extra, args.name)


def splice_generated(old: str | None, generated: str, path) -> str:
    """The report's new text: ``generated`` between the ``BEGIN`` and ``END`` lines, and the
    hand-written text of ``old`` before and after them unchanged. ``old=None`` (no file yet): the
    markers around ``generated``. An old report without exactly one ``BEGIN`` before one ``END``
    is refused, since rewriting it would lose its hand-written text."""
    if old is None:
        return f"{BEGIN}\n{generated}{END}\n"
    if old.count(BEGIN) != 1 or old.count(END) != 1 or old.index(BEGIN) > old.index(END):
        raise ValueError(
            f"{path}: expected one line {BEGIN!r} before one line {END!r} around the generated table; "
            "put them around the part this script writes (the text outside them is kept), or move the file "
            "away to start a new one."
        )
    head, rest = old.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    return f"{head}{BEGIN}\n{generated}{END}{tail}"


def write_report(out: Path, table, samples, extra, name: str = "shakespeare_char"):
    import flax

    fp = next((r for r in table if r["variant"] == "fp"), None)
    load = os.getloadavg()
    header = (
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores shared with "
        f"other jobs (load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} when this table was "
        f"written), jax {jax.__version__}, flax {flax.__version__}, {jax.devices()[0].platform}; seed 0; "
        f"{max(r['steps'] for r in table):,} steps of 12 x 64 characters"
        + (" (nanoGPT's CPU budget)" if max(r["steps"] for r in table) == 2000 else "")
        + ", 4 layers, 4 heads, width 128, context 64, rotary positions, tied embeddings."
    )
    columns = (
        "| model | val loss (whole split) | perplexity | gap to FP | median step | wall | file "
        "| packed layers vs float32 | decode tok/s (train graph) | decode tok/s (packed) "
        "| greedy 500 tokens packed = train graph |"
    )
    lines = [header, "", columns, "|" + " --- |" * 11]
    for r in table:
        gap = "-" if fp is None or r["variant"] == "fp" else f"{r['val_loss'] - fp['val_loss']:+.3f}"
        file = (
            f"{r['packed_file'] / 1024:.0f} KiB packed ({r['float_file'] / 1024:.0f} KiB float32)"
            if "packed_file" in r
            else f"{r['float_file'] / 1024:.0f} KiB float32"
        )
        ratio = f"{r['layer_ratio']:.1f}x smaller" if "layer_ratio" in r else "-"
        packed_rate = f"{r['tok_s_packed']:.0f}" if "tok_s_packed" in r else "-"
        same = "-" if "greedy_equal" not in r else ("yes" if r["greedy_equal"] == 500 else f"first {r['greedy_equal']}")
        lines.append(
            f"| {LABELS[r['variant']]} | {r['val_loss']:.3f} | {r['ppl']:.2f} | {gap} | {r['step_ms']:.0f} ms | "
            f"{r['wall_s']:.0f} s | {file} | {ratio} | {r['tok_s_train_graph']:.0f} | {packed_rate} | {same} |"
        )
    lines += [
        "",
        (
            f"nanoGPT (PyTorch, {'same budget' if max(r['steps'] for r in table) == 2000 else '2,000 steps'}, "
            f"learned positions, this CPU): {NANOGPT['val_whole_split']} on "
            f"the whole validation split ({NANOGPT['val_20_batches']} on its 20-batch estimate), "
            f"{NANOGPT['step_ms']} ms per step (median), {NANOGPT['wall_s']} s."
        ),
    ]
    if "bench" in extra:
        b = extra["bench"]
        lines += [
            "",
            (
                "Training step, the three models' steps interleaved in one process (same load on each): "
                + ", ".join(f"{LABELS[v]} {ms:.1f} ms" for v, ms in b.items())
                + f"; ternary / float = {b['bitnet'] / b['fp']:.2f}x, "
                f"1-bit / float = {b['bitnet_1bit'] / b['fp']:.2f}x."
            ),
        ]
    if "large" in extra:
        g = extra["large"]
        lines += [
            "",
            (
                f"Random-weight GPT of {g['params'] / 1e6:.0f}M parameters (12 x 768), batch 1 greedy "
                f"decode on this CPU: float {g['fp']:.1f} tok/s, BitNet training graph "
                f"{g['bitnet_training_graph']:.1f} tok/s, packed 2-bit {g['bitnet_packed']:.1f} tok/s."
            ),
        ]
    print("\n".join(lines))  # first, so that a refused report file loses no numbers
    report = out / f"{name}.md"
    old = report.read_text() if report.is_file() else None
    report.write_text(splice_generated(old, "\n".join(lines) + "\n", report))
    (out / f"{name}_samples.md").write_text(
        f"Prompt {PROMPT!r}, temperature 0.8, top-k 20, key 0.\n\n" + "\n".join(samples)
    )


if __name__ == "__main__":
    main()
