"""The report's tuning section: Optuna's own figures for every study of a suite that has a
best-trial file (``bench tune``)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from bench import store


def study_figures(suite: store.Suite, storage: str | None = None) -> list[tuple[str, object]]:
    """(title, plotly Figure) per study: optimization history, intermediate values,
    parameter importances (studies with more than one parameter), slices. ``storage``
    overrides the URL the files name (whose password is redacted). A study that cannot be
    read is skipped with a note on stderr."""
    if not suite.tuning_dir.is_dir():
        return []
    import optuna
    from optuna import visualization as vis

    figures = []
    for info in suite.best_trials():
        url = storage or info["storage"]
        if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists() \
                and suite.optuna_db.exists():
            url = suite.default_storage()  # the results folder was moved
        if url.startswith("journal:"):  # bench tune --storage journal:PATH
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend
            url = JournalStorage(JournalFileBackend(url[len("journal:"):]))
        try:
            study = optuna.load_study(study_name=info["study"], storage=url)
        except Exception as err:  # unreachable database, redacted password, ...
            print(f"tuning figures: study {info['study']} not read: {err}", file=sys.stderr)
            continue
        who = f"{info['backbone']}/{info['method']}"
        plots = [("optimization history", vis.plot_optimization_history),
                 ("intermediate values (held-out mean top-1 per epoch)",
                  vis.plot_intermediate_values), ("slices", vis.plot_slice)]
        if len(info["params"]) > 1:
            plots.insert(1, ("parameter importances", vis.plot_param_importances))
        for title, plot in plots:
            try:
                fig = plot(study)
            except Exception as err:  # e.g. too few complete trials
                print(f"tuning figures: {who} {title}: {err}", file=sys.stderr)
                continue
            fig.update_layout(title=f"{who}: {title} (study {info['study']})")
            figures.append((f"{who}: {title}", fig))
    return figures


def section(suite: store.Suite) -> list[dict]:
    """The figures as the suite page draws them."""
    return [{"title": title, "fig": json.loads(fig.to_json())}
            for title, fig in study_figures(suite)]
