"""Readers: who gets the newsletter, how they join and leave, and what they are told.

- `subscribers`: `Subscribers`, double opt-in, confirm, unsubscribe, the editor's list tools
- `addresses`: addresses and names validated and normalized; header-safe values, List-Id
- `tokens`: `Tokens`, the signed confirm, unsubscribe and bounce (VERP) tokens
- `mail`: `SubscriberMail`, the confirmation and welcome emails (sent through a `Mailer`)
- `csvfile`: CSV import and export of the list
- `outcomes`: what the list's operations return (consent sources, actions, results)
- `spool`: unsubscribes kept in a file while the database cannot take them, applied later
- `bounces`: `Inbound`, bounces, complaints and emailed unsubscribes applied to the list
- `reports`: what one inbound message is, and whom its evidence points at
- `mailqueue`: the queued confirmation and welcome emails, sent with retries
"""
