"""The store: one SQL database, SQLite by default or PostgreSQL for several instances.

- `db`: the `Store`, which opens transactions and reads. `engine`: the engine for a URL and
  its SQLite settings. `tx`: `Tx`, what one message's transaction does. `outbox`: claiming
  due outbox items and recording their outcomes. `tables`: the schema as SQLModel classes;
  `statements`: their Core handles and the per-message statements, built once;
  `migrations`: the versioned schema. `direct`: the hot statements, compiled once, run
  on the driver's cursor. `batch_reads`: the thread reads of a batch of new messages,
  asked once for the batch.
  `writelock`: SQLite writers' fair queue. `peers`: instances and their mailbox leases.
  `snapshot`: the aggregate reads of a metrics scrape. `summaries`: threads for people
  (`replay`, `threads`). `codec`: a thread's SLA clock as stored JSON. `access`: whether a
  `[store] url` can be used (the SQLite file's folder, the schema version a command needs),
  and the driver's errors turned into `StoreError`. `backup`: a checked copy of a SQLite
  store taken while the daemon writes.

It may import `mailbridge.core`, `mailbridge.config`, `mailbridge.errors`, `mailbridge.logs`
and `mailbridge.clock`; it knows nothing of mail servers or of the daemon.
"""
