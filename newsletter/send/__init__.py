"""Send: the composed issue to every reader, once, at the configured rate.

- `service`: `send_issue`, and the checks and counts around a send of several workers
- `review`: `dry_run`, `send_proof`, `issue_status`: looking before (and while) sending
- `preflight`: what every send checks first: the issue, its links, its readers, one writer
- `ledger`: the delivery ledger, one row per (issue, reader), committed step by step
- `run`: `Sender`, the dispatcher and the pool of connections
- `options`: `SendOptions`, `SendEvents` and `RunTally`: how a send behaves and reports
- `claims`: a worker's hold on ledger rows: batch claims, leases, heartbeat
- `commit`: outcomes written in bulk, on a short timer or a row count
- `pacing`: one rate and one pair of caps for every worker, kept in the database
- `message`: `IssueMessage`, the issue encoded once and filled in per reader
- `encoding`: the body's pieces (quoted-printable, DKIM and wire forms) and header lines
- `dkim`: `DkimSigner`
- `deliver`: `RelayConnection` and what each relay answer means
- `ratelimit`: the global rate and the hourly and daily caps
- `setup`: the signer and the list's headers, made from the settings
- `smtp`: the configured SMTP client and the setup problems it can meet
- `notices`: `SmtpMailer`, which sends the confirmation and welcome emails
- `devsmtp`: the local SMTP sink of `slice dev-smtp`, the demo and the tests
- `inbound`: the LMTP/SMTP server of `slice inbound`, for bounces and emailed unsubscribes
- `imapdrain`: `slice inbound --imap`, a hosted bounce mailbox drained message by message
"""
