"""Blind pairwise human evaluation in the browser (`ple annotate`, the paper's Figure 2b).

`pairs` loads and matches two models' eval samples and schedules both orders of every
pair; `store` keeps judgments in SQLite; `app` is the judging page; `report` turns the
judgments into win/tie/lose, agreement, a chart and JSON; `command` is the CLI.
"""
