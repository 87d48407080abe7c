"""Services under both front ends: what `cli/` and `web/` ask of run history, logs and
descriptions, as typed records. Front ends render these records; they hold no queries of their
own. Services lean on `orchestrate`, `system` and `config`, never on a front end."""
