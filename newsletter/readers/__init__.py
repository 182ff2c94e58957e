"""Readers: who gets the newsletter, how they join and leave, and what they are told.

- `subscribers`: `Subscribers`, the one service over the list: double opt-in and confirm here
- `listbase`: what it stands on: reading the list, write turns, starting a confirmation link
- `leaving`: unsubscribe, the editor's remove and forget, the spooled unsubscribes applied
- `listtools`: the editor's tools: add with consent held, CSV rows imported, prune
- `listrows`: finding a subscriber's row, queueing their email, the one-line answers
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
