"""The Prometheus metrics: every family defined once, and the store-derived collector.

- `families`: `Metrics`, the counters and histograms updated on events, on a registry
  passed in (a fresh one per test), with bounded labels only.
- `collector`: `StoreCollector`, the gauges (open, at risk, breached, oldest unanswered)
  read from the store at scrape time, so they are true after a restart.

It may import `store`, `core`, `config` and the shared leaves; `io` and `daemon` import it.
"""
