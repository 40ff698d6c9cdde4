"""Online serving: the prediction service (hybrid: head precomputed, tail on demand).

    python -m ml.serving          # or `make serve`: http://127.0.0.1:$PRODML_SERVE_PORT (8000)

Modules, by role:
    app.py            HTTP routes (FastAPI): /predict, /healthz, /metrics, /admin/*
    service.py        what answers each instance (kill switch → head → tail → fallback), hot reload
    inputs.py         request checks against the feature contract (4xx naming the field)
    auth.py           API keys: environment or Secret Manager, constant-time comparison
    head.py           the champion's precomputed partitions of `predictions`, in memory
    tail.py           SavedModel scoring and the micro-batcher
    routing.py        the routing hook (champion only, or ml.serving.bandit's ThompsonBandit)
    fallback.py       the safe fallback: historical congestion rate per sensor and hour
    kill_switch.py    the "stop predictions" flag (CLI, admin endpoint, DAG) with who/why
    prediction_log.py every served prediction, to the warehouse in batches, off the request path
    metrics.py        Prometheus metrics
    settings.py       the profile's `serving:` section
"""
