"""`ple compare`: several methods and ablations on one task, at the same budget and seeds,
evaluated and judged alike, in one report (config, orchestrate, study; report, put together
from results, guards, selection, figures and render; frontier)."""
