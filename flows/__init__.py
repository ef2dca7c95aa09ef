"""Prefect flows and the CLI. Settings Prefect must see before it is first imported live here."""

import os

# Prefect's temporary server migrates a new database on its first start; Prefect allows 20 s,
# which a busy 2-core laptop or VM can exceed ("Timed out while attempting to connect to
# ephemeral Prefect API server"). A value the user has set wins.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
