"""Usage: the gateway's usage events drained into usage records (`drain`, `services`), sealed
in the audit chain (`seals`), summed into rollups (`rollups`) that the dashboards and the
usage API read (`selectors`, `views`, `api`)."""
