"""Plots, image grids and the HTML report (matplotlib, imported lazily so `import polyhead` stays light).

    curves.py           learning curves from history.csv
    evaluation.py       confusion matrices, per-label bars, ROC/PR, calibration, worst examples
    grids.py            captioned image grids (samples, worst examples)
    data_inspection.py  `polyhead inspect-data`: sample grids, label distributions, data warnings
    html.py             the self-contained report.html
    run.py              what `fit` and `evaluate` call: plots + report in one step
"""
