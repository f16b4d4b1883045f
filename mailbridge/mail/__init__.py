"""Email in and out: received bytes parsed safely, the mail we send built and rendered.

- `parse` (with `fields`, `decode`, `bodystructure`, `defects`): hostile bytes in, an
  `InboundMessage` out; it never raises.
- `headers`: safe values for every header we write. `render` (with `templates`): the
  acknowledgement, status update and staff notices from jinja2 templates, shipped in
  `templates/` and overridable from an operator's folder. `agent_mail`: relayed agent mail
  and the reply to a wrong command.

It may import `mailbridge.core`, `mailbridge.config`, `mailbridge.errors` and
`mailbridge.logs`; nothing here touches a socket, the store or the clock.
"""
