"""Prometheus metrics of the service (`GET /metrics`, text format), one registry per service.

    prodml_http_requests_total{route,status}         requests by route and HTTP status
    prodml_http_request_seconds{route}               request latency (histogram)
    prodml_predictions_total{path,model_version}     predictions by path (head | tail | fallback)
    prodml_prediction_seconds{path}                  latency of the requests, by the path of their rows
    prodml_head_hit_ratio                            head / (head + tail) predictions since start
    prodml_errors_total{kind}                        bad_input, unauthorized, forbidden, model, reload, ...
    prodml_tail_batch_rows                           rows per micro-batched model call (histogram)
    prodml_route_share{model_version}                tail share per version (the bandit's, else observed)
    prodml_kill_switch                               1 while the kill switch is on
    prodml_model_info{role,model_version}            1 for the loaded champion / challengers
    prodml_head_rows                                 head rows held in memory
    prodml_prediction_log_rows{state}                written | dropped | queued
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily

disable_created_metrics()  # no *_created series: one timestamp per label set, twice the text for nothing

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class _Live:
    """Values read from the service at scrape time (no bookkeeping on the request path)."""

    def __init__(self, service):
        self.service = service

    def collect(self):
        s = self.service
        head, tail = s.path_counts.get("head", 0), s.path_counts.get("tail", 0)
        ratio = GaugeMetricFamily("prodml_head_hit_ratio", "Head predictions / (head + tail) since start")
        ratio.add_metric([], head / (head + tail) if head + tail else 0.0)
        yield ratio
        yield GaugeMetricFamily("prodml_kill_switch", "1 while the kill switch is on",
                                value=1.0 if s.kill.on else 0.0)
        yield GaugeMetricFamily("prodml_head_rows", "Head rows held in memory", value=len(s.head))
        info = GaugeMetricFamily("prodml_model_info", "Loaded model versions", labels=["role", "model_version"])
        for i, version in enumerate(s.versions):
            info.add_metric(["champion" if i == 0 else "challenger", version], 1.0)
        yield info
        share = GaugeMetricFamily("prodml_route_share", "Share of tail predictions per model version",
                                  labels=["model_version"])
        for version, value in s.route_shares().items():
            share.add_metric([version], value)
        yield share
        log = GaugeMetricFamily("prodml_prediction_log_rows", "Prediction log rows", labels=["state"])
        writer = s.log_writer
        log.add_metric(["written"], writer.written)
        log.add_metric(["dropped"], writer.dropped)
        log.add_metric(["queued"], writer.queued)
        yield log


class Metrics:
    def __init__(self, service):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("prodml_http_requests", "Requests by route and status", ["route", "status"],
                                registry=r)
        self.request_seconds = Histogram("prodml_http_request_seconds", "Request latency", ["route"],
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.predictions = Counter("prodml_predictions", "Predictions by path and model version",
                                   ["path", "model_version"], registry=r)
        self.prediction_seconds = Histogram("prodml_prediction_seconds",
                                            "Latency of /predict requests by the path of their rows", ["path"],
                                            buckets=LATENCY_BUCKETS, registry=r)
        self.errors = Counter("prodml_errors", "Errors by kind", ["kind"], registry=r)
        self.batch_rows = Histogram("prodml_tail_batch_rows", "Rows per micro-batched model call",
                                    buckets=BATCH_BUCKETS, registry=r)
        r.register(_Live(service))

    def render(self) -> bytes:
        return generate_latest(self.registry)
