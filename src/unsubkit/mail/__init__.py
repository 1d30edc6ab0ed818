"""Inbound mail: the mailto unsubscribe listener (SMTP/LMTP) and the pipe for MTAs.

- :mod:`.mailto` pure decisions: which recipient is ours, bounce and Apple Mail detection, replies
- :mod:`.fromcheck` the DKIM-aligned From-address fallback (DNS injected)
- :mod:`.processor` recipient and message outcomes shared by the listener and the pipe
- :mod:`.handler` the aiosmtpd handler object
- :mod:`.listener` the listener as a background service of ``unsubkit serve``
- :mod:`.ingest` one message from stdin, or a whole mbox / Maildir
"""
