"""Schema migrations: numbered SQL files, applied in order, each once.

A file holds plain SQL both engines take; `{id}` stands for the dialect's auto-increment primary
key. A migration that cannot be written portably ships as `NNNN_name.sqlite.sql` and
`NNNN_name.postgres.sql`. Migrations are additive: a running older coordinator keeps working.
"""
