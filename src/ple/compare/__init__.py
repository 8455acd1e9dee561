"""`ple compare`: several methods and ablations on one task, at the same budget and seeds,
evaluated and judged alike, in one report (config, orchestrate, study, report, frontier)."""
