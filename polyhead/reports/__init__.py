"""Plots and the HTML report of a run (matplotlib, imported lazily so `import polyhead` stays light).

    curves.py      learning curves from history.csv
    evaluation.py  confusion matrices, per-label bars, ROC/PR, calibration, worst examples
    html.py        the self-contained report.html
    run.py         what `fit` and `evaluate` call: plots + report in one step
"""
