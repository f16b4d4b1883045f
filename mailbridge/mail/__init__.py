"""Email in and out: received bytes parsed safely, the mail we send built and rendered.

- `parse` (with `fields`, `decode`, `bodystructure`, `defects`): hostile bytes in, an
  `InboundMessage` out; it never raises.
- `headers`: safe values for every header we write. `mime`: the header block and the
  multipart body of every mail we send, its pictures inline; `flowed`: its text parts as
  format=flowed. `render` (with `templates`): the acknowledgement,
  status update and staff notices from jinja2 templates, shipped in `templates/` and
  overridable from an operator's folder (`[templates] dir`); `samples`: sample mail of
  every kind that `check-config` renders an operator's templates with. `agent_mail`:
  relayed agent mail and the reply to a wrong command.

It may import `mailbridge.core`, `mailbridge.config`, `mailbridge.errors` and
`mailbridge.logs`; nothing here touches a socket, the store or the clock.
"""
