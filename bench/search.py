"""How often a study's search reaches the claim, and at what cost, over many sampler seeds.

    python bench/search.py --study recipe --seeds 0-7 --max-images 3.3M --out search-recipe/

For each study file and sampler seed it runs the study (the sweep's command line, in this
process, one trial per call) in its own stores, `OUT/<study>/seed-<k>/`, from a copy of the
file with only its sampler seed changed, until the seed is **at the claim** (the trial chosen
on validation has 99.21% or more on
all 10,000 test images) or the study has spent `--max-images` training images. Test accuracy
scores the search here and never steers it: a seed stops once at the claim, which changes
nothing chosen before. Run again, it continues each seed where it stopped (a larger
`--max-images` continues the seeds the smaller one stopped).

It writes OUT/search.csv (a row per study and seed), OUT/search.md (per study: the success rate
within the budget, the median and worst images to the claim, wall time and the CPU) and
OUT/search.png (the fraction of seeds at the claim against images spent, one curve per study).
Several `--study` give several curves on one plot.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sweep.cli import image_count  # noqa: E402
from sweep.console import quiet_libraries  # noqa: E402
from sweep.errors import SweepError  # noqa: E402
from sweep.search.spec import find_spec, load_spec, with_sampler_seed  # noqa: E402
from sweep.stats import images  # noqa: E402
from sweep.stores import folder_stores  # noqa: E402
from sweep.training.config import cpu_model  # noqa: E402

COLUMNS = [
    "study",
    "seed",
    "reached",
    "images_to_claim",
    "images_spent",
    "trials",
    "best_val",
    "chosen_test",
    "wall_seconds",
    "cpu",
]
LOG, WALL = "sweep.log", "wall.json"  # in each seed's folder: what the sweep printed, and what each call took


@dataclass(frozen=True)
class Seed:
    """Where one sampler seed's search stands."""

    study: str
    seed: int
    reached: bool
    images_to_claim: float | None  # training images the study had spent when the claim was first reached
    images_spent: float
    trials: int  # finished trials (complete or pruned)
    best_val: float | None  # the validation-chosen trial's validation accuracy
    chosen_test: float | None  # and its accuracy on the test images
    wall_seconds: float  # of every sweep call for this seed
    cpu: str  # the CPUs those calls ran on


def seeds_of(text: str) -> list[int]:
    """ "0-7" or "0,2,5" (or both: "0-3,8")."""
    found = []
    try:
        for part in text.split(","):
            low, _, high = part.partition("-")
            found += range(int(low), int(high or low) + 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of seeds (e.g. 0-7 or 0,2,5)") from None
    if not found or min(found) < 0:
        raise argparse.ArgumentTypeError(f"{text!r} names no seeds")
    return sorted(set(found))


def seed_folder(out: Path, study_file: Path, seed: int) -> Path:
    """The seed's own folder, holding its copy of the study file (written each time: a study
    file that changed since the seed started is refused by its study, as any spec would be)."""
    spec = load_spec(study_file)
    folder = out / spec.name / f"seed-{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "study.toml").write_text(with_sampler_seed(spec.source, seed))
    return folder


def standing(folder: Path, seed: int) -> Seed | None:
    """What the seed's stores say, or None before its first trial."""
    import optuna

    from sweep.report.claim import claim_reached
    from sweep.report.frame import best_row, completed, trials_frame
    from sweep.search.budget import study_images
    from sweep.search.storage import load_study, study_names
    from sweep.tracking.store import mlflow_client

    storage, tracking = folder_stores(folder)
    if not study_names(storage):
        return None
    study = load_study(study_names(storage)[0], storage)
    frame = trials_frame(study, mlflow_client(tracking, must_exist=True))
    done, reached = completed(frame), claim_reached(frame)
    best = best_row(done) if not done.empty else None
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    calls = json.loads((folder / WALL).read_text()) if (folder / WALL).exists() else []
    return Seed(
        study.study_name,
        seed,
        reached is not None,
        None if reached is None else reached.images,
        study_images(study),
        len(study.get_trials(deepcopy=False, states=finished)),
        None if best is None else best["val_accuracy"],
        None if best is None else best["test_accuracy"],
        sum(c["seconds"] for c in calls),
        "; ".join(sorted({c["cpu"] for c in calls})),
    )


def _sweep(folder: Path, argv: list[str]) -> int:
    """One call of the sweep's command line, `python sweep.py ARGV`, run in this process (so
    TensorFlow is imported once, not once per trial) in the seed's folder, its output appended
    to the seed's log. Its exit code."""
    from sweep.cli import main

    here = os.getcwd()
    with open(folder / LOG, "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        os.chdir(folder)  # its reports/ go there
        try:
            return main(argv)
        except SystemExit as e:  # argparse's errors
            return e.code
        finally:
            os.chdir(here)


def run_seed(folder: Path, seed: int, max_images: int, sweep_args: list[str]) -> Seed:
    """Run the seed's study a trial at a time until it is at the claim or out of images."""
    while True:
        now = standing(folder, seed)
        if now is not None and (now.reached or now.images_spent >= max_images):
            return now
        trials = 1 + (now.trials if now else 0)
        storage, tracking = folder_stores(folder)
        argv = ["--study", "study.toml", "--trials", str(trials), "--max-images", str(max_images),
                "--storage", storage, "--tracking-uri", tracking, *sweep_args]  # fmt: skip
        started = time.monotonic()
        code = _sweep(folder, argv)
        calls = json.loads((folder / WALL).read_text()) if (folder / WALL).exists() else []
        (folder / WALL).write_text(json.dumps([*calls, {"cpu": cpu_model(), "seconds": time.monotonic() - started}]))
        if code != 0:
            tail = (folder / LOG).read_text().splitlines()[-5:]
            raise SweepError(f"the sweep of seed {seed} exited {code} (its log: {folder / LOG}): {' / '.join(tail)}")
        after = standing(folder, seed)
        if after.trials < trials and after.images_spent < max_images and not after.reached:
            raise SweepError(f"the sweep of seed {seed} finished no trial (its log: {folder / LOG})")
        print(
            f"  seed {seed}: {after.trials} trials, {images(after.images_spent)} images"
            + (f", at the claim after {images(after.images_to_claim)}" if after.reached else ""),
            flush=True,
        )


def median_images(rows: list[Seed], max_images: int) -> str:
    """The median images to the claim over all seeds, a seed that never reached it counting as
    more than the budget."""
    values = sorted(r.images_to_claim if r.reached else float("inf") for r in rows)
    middle = statistics.median(values)
    return images(middle) if middle != float("inf") else f"> {images(max_images)}"


def summary(rows: list[Seed], studies: dict[str, str], max_images: int) -> str:
    lines = [
        "# Search benchmark: how often a study reaches the claim, and at what cost",
        "",
        f"Each sampler seed runs its study in its own stores until the trial chosen on validation has "
        f"99.21% or more on all 10,000 test images (**at the claim**), or until it has spent "
        f"{images(max_images)} training images. Test accuracy scores the search; it never steers it. "
        "Images to the claim count every trial's training images (pruned and stopped ones included) "
        "until that moment; they do not depend on the machine, minutes do.",
        "",
        "| study | seeds at the claim | median images to the claim | worst | wall time |",
        "|---|---|---|---|---|",
    ]
    for name, source in studies.items():
        mine = [r for r in rows if r.study == name]
        reached = [r for r in mine if r.reached]
        worst = (
            images(max(r.images_to_claim for r in reached))
            if len(reached) == len(mine)
            else f"> {images(max_images)} ({len(mine) - len(reached)} not reached)"
        )
        hours = sum(r.wall_seconds for r in mine) / 3600
        cpus = "; ".join(sorted({c for r in mine for c in r.cpu.split("; ") if c})) or "no CPU recorded"
        lines.append(
            f"| {name} ({source}) | {len(reached)}/{len(mine)} | {median_images(mine, max_images)} | {worst} | "
            f"{hours:.1f} h on {cpus} |"
        )
    for name in studies:
        lines += [
            "",
            f"## {name}",
            "",
            "| seed | reached | images to the claim | images spent | finished trials | chosen val | its test |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in (r for r in rows if r.study == name):
            pct = lambda v: "" if v is None else f"{100 * v:.2f}%"  # noqa: E731
            lines.append(
                f"| {r.seed} | {'yes' if r.reached else 'no'} | "
                f"{images(r.images_to_claim) if r.reached else '—'} | {images(r.images_spent)} | {r.trials} | "
                f"{pct(r.best_val)} | {pct(r.chosen_test)} |"
            )
    return "\n".join([*lines, "", "![Seeds at the claim against training images spent](search.png)", ""])


def plot(rows: list[Seed], studies: list[str], max_images: int, out: Path) -> None:
    """The fraction of seeds at the claim against training images spent (an ECDF), per study."""
    import matplotlib.pyplot as plt

    plt.switch_backend("Agg")
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name in studies:
        mine = [r for r in rows if r.study == name]
        hits = sorted(r.images_to_claim / 1e6 for r in mine if r.reached)
        xs = [0.0, *hits, max_images / 1e6]
        ys = [k / len(mine) for k in range(len(hits) + 1)]
        ax.step(xs, [*ys, ys[-1]], where="post", label=f"{name} ({len(hits)}/{len(mine)} seeds)")
    ax.axvline(max_images / 1e6, color="gray", linestyle=":", label="budget")
    ax.set(
        xlabel="training images spent by the study (millions)",
        ylabel="fraction of sampler seeds at the claim",
        ylim=(0, 1.05),
        xlim=(0, max_images / 1e6 * 1.02),
        title="The search reaching 99.21% on all 10,000 test images",
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "search.png", dpi=90)
    plt.close(fig)


def write(rows: list[Seed], studies: dict[str, str], max_images: int, out: Path) -> None:
    import pandas as pd

    pd.DataFrame([asdict(r) for r in rows], columns=COLUMNS).to_csv(out / "search.csv", index=False)
    (out / "search.md").write_text(summary(rows, studies, max_images))
    plot(rows, list(studies), max_images, out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/search.py", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--study",
        action="append",
        required=True,
        help="a study file or the name of one of the tool's own (repeat to compare several)",
    )
    p.add_argument(
        "--seeds", type=seeds_of, default=seeds_of("0-7"), help="sampler seeds, e.g. 0-7 or 0,2,5 (default 0-7)"
    )
    p.add_argument("--max-images", type=image_count, required=True, metavar="N", help="each seed's budget, e.g. 3.3M")
    p.add_argument("--out", type=Path, required=True, help="folder for every seed's stores and the summary")
    p.add_argument(
        "--data-dir", default=os.environ.get("SWEEP_DATA_DIR"), help="the MNIST folder (default $SWEEP_DATA_DIR)"
    )
    p.add_argument("--lstm-backend", default="auto", choices=("auto", "native", "keras"))
    args = p.parse_args(argv)
    quiet_libraries(tensorflow=False)  # this process only reads the stores
    sweep_args = [
        "--lstm-backend",
        args.lstm_backend,
        *(["--data-dir", str(Path(args.data_dir).resolve())] if args.data_dir else []),
    ]
    try:
        files = {load_spec(s).name: find_spec(s) for s in args.study}
        rows = []
        for seed in args.seeds:  # seed by seed, the studies taking turns: a comparison at every moment
            for name, path in files.items():
                print(f"{name}, sampler seed {seed}", flush=True)
                folder = seed_folder(args.out.resolve(), path, seed)
                rows.append(run_seed(folder, seed, args.max_images, sweep_args))
                order = {n: k for k, n in enumerate(files)}
                write(
                    sorted(rows, key=lambda r: (order[r.study], r.seed)),
                    {n: str(p) for n, p in files.items()},
                    args.max_images,
                    args.out,
                )
    except SweepError as e:
        print(f"bench/search.py: error: {e}", file=sys.stderr)
        return 2
    print(f"written: {args.out / 'search.csv'}, {args.out / 'search.md'}, {args.out / 'search.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
