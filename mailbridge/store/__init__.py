"""The store: one SQL database, SQLite by default or PostgreSQL for several instances.

- `db`: the `Store` and its transactions (`Tx`), the outbox claims. `tables`: the schema as
  SQLModel classes; `migrations`: the versioned schema. `direct`: SQLite's hot statements,
  compiled once. `writelock`: SQLite writers' fair queue. `peers`: instances and their
  mailbox leases. `snapshot`: the aggregate reads of a metrics scrape. `summaries`: threads
  for people (`replay`, `threads`). `codec`: a thread's SLA clock as stored JSON.

It may import `mailbridge.core`, `mailbridge.config`, `mailbridge.errors`, `mailbridge.logs`
and `mailbridge.clock`; it knows nothing of mail servers or of the daemon.
"""
