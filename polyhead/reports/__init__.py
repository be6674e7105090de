"""Reports: plots, image grids and the HTML report, written from data or from a run folder."""
