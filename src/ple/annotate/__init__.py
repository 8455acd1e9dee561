"""Blind pairwise human evaluation in the browser (`ple annotate`, the paper's Figure 2b).

`pairs` schedules both orders of every pair (the pairs, two models' eval samples matched
by query, are ple.evaluation.pairwise's, shared with `ple winrate`); `store` keeps
judgments in SQLite; `app` is the judging page; `report` turns the judgments into
win/tie/lose, agreement, a chart and JSON; `command` is the CLI.
"""
