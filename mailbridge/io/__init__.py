"""The adapters to the outside: IMAP, SMTP, the submission relay and HTTP.

- `imap_watcher`: one mailbox watched with IDLE. `smtp_sender`: the SMTP transport (one
  kept connection, PIPELINING). `relay`: the agents' submission relay (aiosmtpd).
- `http`: /metrics and /healthz. `tls`: verified client contexts. `backoff`: retry delays.
- `oauth2`: the access tokens of the [oauth2] grant (refresh, rotation). `oauth2_login`: the
  first sign-in that obtains the grant (`mailbridge oauth2-login`).

Library errors (imapclient, smtplib, aiosmtpd) end here, turned into `TransientError` or
`PermanentError`. It may import `mail`, `store`, `metrics`, `core`, `config` and the shared
leaves (`errors`, `logs`, `clock`); never `daemon` or `cli`.
"""
