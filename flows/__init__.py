"""Prefect flows that compose ``restore`` library calls; ``restore/`` itself never imports Prefect.

Importing this package sets environment defaults for Prefect (see :mod:`flows.environment`) before
any Prefect import, so ``restore batch`` runs on Prefect's temporary local API with nothing started.
"""

from flows.environment import set_prefect_defaults

set_prefect_defaults()
