"""Writing a study's report: trials.csv, report.md, report.html and the plots, logged to the
study's parent MLflow run too."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
from mlflow import MlflowClient

from sweep.errors import SweepError
from sweep.report import plots
from sweep.report.claim import CLAIM, THE_CLAIM
from sweep.report.frame import baseline_frame, completed, pareto_front, searched, trials_frame
from sweep.report.page import Section, render_html, render_markdown
from sweep.report.sections import (
    best_section,
    claim_section,
    cost_section,
    importance_section,
    top_section,
    warm_start_section,
)
from sweep.report.seeds import baseline_section, confirm_sections, verdict_section
from sweep.search.attributes import ATTR_SPEC
from sweep.search.spec import DEFAULT_STUDY, parse_spec
from sweep.seeds.choice import choose, confirmed_trials, val_hits
from sweep.tracking.study import log_report


def curve_unit(study: optuna.Study) -> str:
    """What the study's curve points count (steps, epochs or % of the schedule), from its spec."""
    try:
        return parse_spec(study.user_attrs[ATTR_SPEC], study.study_name).fixed.curve_unit()
    except (KeyError, SweepError):
        return "curve point"


def write_report(study: optuna.Study, client: MlflowClient, out: Path) -> pd.DataFrame:
    """Write trials.csv, report.md, report.html and the plots to `out`, and log them as
    artifacts (`report/`) of the study's parent MLflow run. Returns the trials table."""
    frame, params = trials_frame(study, client), list(searched(study))
    if frame.empty:
        raise SweepError(f"study '{study.study_name}' has no trials yet")
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "trials.csv", index=False)
    hits = lambda run_id: val_hits(client, run_id)  # noqa: E731
    found = confirmed_trials(client, study)
    choice = choose(found, hits) if found else None
    verdict = verdict_section(choice, frame, baseline_frame(client, DEFAULT_STUDY), study.study_name)
    best = best_section(frame, params)
    done = completed(frame)
    drawn = plots.draw(
        study, frame, done, pareto_front(done.dropna(subset=["train_images"])), curve_unit(study), CLAIM, out
    )
    cost_plot = drawn.pop(drawn.index("cost.png")) if "cost.png" in drawn else None
    sections = [
        verdict,
        claim_section(),
        baseline_section(baseline_frame(client, study.study_name), study.study_name),
        best,
        cost_section(frame, params, cost_plot, hits),
        *confirm_sections(choice),
        *filter(None, [warm_start_section(frame)]),
        top_section(frame, params),
        importance_section(study, frame, params),
        Section(
            "Plots",
            [
                f"Validation accuracy is Optuna's objective. Red dashed lines: the tutorial's {THE_CLAIM}. "
                "Learning curves: every trial's validation curve as the pruner saw it, pruned and stopped "
                "trials marked where they ended."
            ],
            [],
            drawn,
        ),
    ]
    title = f"Study '{study.study_name}': {int((frame['state'] == 'COMPLETE').sum())} completed of {len(frame)} trials"
    (out / "report.md").write_text(render_markdown(title, sections))
    (out / "report.html").write_text(render_html(title, sections))
    log_report(client, study.study_name, out, verdict.text + best.text)
    return frame
