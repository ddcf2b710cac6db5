"""Reading statuses back: per-source summaries, time series and statistics (CONTRACT §4).

`rollups` folds raw results into 5-minute buckets; `queries` reads summaries, series and
statistics; `controllers` serves them over HTTP.
"""
