"""What every prodml DAG shares: owner, retries with exponential backoff, failure alerts."""

from __future__ import annotations

import datetime as dt
import logging

log = logging.getLogger(__name__)


def alert_on_failure(context) -> None:
    """on_failure_callback: one alert through ml.alerts (warehouse row + structured log line)."""
    from ml import alerts, config, warehouse

    ti = context.get("task_instance") or context.get("ti")
    dag_id = getattr(ti, "dag_id", "?")
    task_id = getattr(ti, "task_id", "?")
    exception = context.get("exception")
    run_id = context.get("run_id") or getattr(context.get("dag_run"), "run_id", None)
    wh = None
    try:
        wh = warehouse.connect(config.load()["warehouse"])
        wh.ensure_tables()
    except Exception as exc:  # the alert must still reach the log if the warehouse is down
        log.warning("alert warehouse unavailable: %s", exc)
    try:
        alerts.raise_alert(
            wh, "error", f"airflow.{dag_id}.{task_id}", f"task failed: {exception}",
            {"dag_id": dag_id, "task_id": task_id, "run_id": run_id,
             "try_number": getattr(ti, "try_number", None)},
        )
    finally:
        if wh is not None:
            wh.close()


def failure_callbacks(alerts_config: dict | None) -> list:
    """Always `alert_on_failure`; plus an Airflow notifier when the profile names one, e.g.
    alerts: {notifier: {class: airflow.providers.smtp.notifications.smtp.SmtpNotifier,
                        kwargs: {from_email: ml@x, to: oncall@x}}} (Slack works the same way when
    its provider is installed). Nothing requires a notifier."""
    callbacks = [alert_on_failure]
    notifier = (alerts_config or {}).get("notifier")
    if notifier:
        from airflow.sdk.module_loading import import_string

        callbacks.append(import_string(notifier["class"])(**notifier.get("kwargs", {})))
    return callbacks


def default_args(*, alerts: dict | None = None) -> dict:
    """Every task's defaults; `alerts`: the profile's `alerts:` section (an optional notifier)."""
    return {
        "owner": "ml-platform",
        "retries": 2,
        "retry_delay": dt.timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(minutes=10),
        "on_failure_callback": failure_callbacks(alerts),
    }
