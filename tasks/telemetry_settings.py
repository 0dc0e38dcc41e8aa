"""Where telemetry goes, read from the environment of the process that runs the inputs.

Environment, not flow parameters: a worker (a served deployment's subprocess, a Dask worker)
inherits it, and none of it changes what a step computes. docs/observability.md lists them:

    MMFLOW_LEDGER_URL     cost ledger: sqlite:///path (default: <data dir>/ledger.sqlite) or
                          postgresql://user:password@host:port/db (production)
    MMFLOW_QUOTAS         TOML file of tenant quotas (tasks/provider/quota.py); none: no quota
    MMFLOW_QUOTA_STORE    redis://host:port/db for several workers, or a SQLite path
                          (default: <data dir>/quota.sqlite)
    MMFLOW_OTLP_ENDPOINT  OTLP/HTTP base URL for spans; OTEL_EXPORTER_OTLP_ENDPOINT and
                          OTEL_EXPORTER_OTLP_TRACES_ENDPOINT are honoured too; none: no export
    MMFLOW_METRICS_FILE   a run writes its Prometheus metrics here when it ends (the node
                          exporter's textfile collector reads *.prom files)
    MMFLOW_PUSHGATEWAY    or pushes them to this Pushgateway URL
"""

from __future__ import annotations

import os

from mmflow.tasks.data_folder import data_dir


def _set(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def ledger_url() -> str:
    return _set("MMFLOW_LEDGER_URL") or f"sqlite:///{data_dir() / 'ledger.sqlite'}"


def quotas_file() -> str | None:
    return _set("MMFLOW_QUOTAS")


def quota_store_url() -> str:
    return _set("MMFLOW_QUOTA_STORE") or str(data_dir() / "quota.sqlite")


def otlp_traces_endpoint() -> str | None:
    """The full URL spans are POSTed to, or None when no endpoint is configured."""
    if _set("MMFLOW_OTLP_ENDPOINT"):
        return str(_set("MMFLOW_OTLP_ENDPOINT")).rstrip("/") + "/v1/traces"
    if _set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return _set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if _set("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return str(_set("OTEL_EXPORTER_OTLP_ENDPOINT")).rstrip("/") + "/v1/traces"
    return None


def metrics_file() -> str | None:
    return _set("MMFLOW_METRICS_FILE")


def pushgateway() -> str | None:
    return _set("MMFLOW_PUSHGATEWAY")
