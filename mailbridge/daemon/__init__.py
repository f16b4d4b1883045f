"""The running service: every part built from the `Config` and supervised on one loop.

- `service`: the wiring, startup, main loop and shutdown. `ingest`: one inbound message in,
  decided by the core and recorded with its outbox rows in one transaction. `opening`: a new
  thread's agent, language, promise and acknowledgement. `staff`: agents'
  replies, commands and relayed mail. `deadlines` and `scheduler`: SLA work when it falls
  due. `sender`: the outbox delivered over a transport. `membership`: heartbeat and mailbox
  leases among instances. `policies`, `team`: the configured policies and agents as core
  objects. `notify`: systemd readiness and watchdog. `health`: what is degraded (a refused
  OAuth2 grant) and what to do, apart from what is down. `waiting`: the tasks' one sleep.

It may import `io`, `metrics`, `mail`, `store`, `core`, `config` and the shared leaves;
only `cli` imports it.
"""
