"""The pure core: data and `now` in, decisions out.

No sockets, no SQL, no clock reads, no logging: every rule here is tested with literal
datetimes and generated inputs. It imports nothing of mailbridge outside `core`.

- `model`: the frozen data shared by every layer (messages, verdicts, contexts, outcomes).
- `rules`: who gets an acknowledgement, and why not; `robots`, `senders`, `phrases`: mail
  software recognised by its structure, its addresses and its words in many languages.
  `threads`: which thread a message joins.
- `policy`: which SLA applies. `sla`: a thread's clock through its events, and its decisions.
- `calendar`: business hours, holidays, zones. `eta`: the answer time as the customer reads it.
- `agents`: who answers. `names`: a customer's display name as people say it.
  `commands`: the #commands in an agent's reply. `faq`, `language`,
  `throttle`: articles for the waiting customer, the customer's language, failed-login limits.
"""
