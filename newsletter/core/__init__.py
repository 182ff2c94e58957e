"""The small core every part stands on.

- `settings`: `Settings`, the typed model of every table of slice.toml, and the secrets
- `sitesettings`: `Section` and the tables [newsletter], [paths], [database], [web]
- `mailsettings`: the tables of mail out and back: [smtp], [send], [dkim], [inbound]
- `papersettings`: the tables of papers and the issue: [fetch], [[sources]], [profile], [compose], [stories]
- `config`: `load_settings` (defaults < slice.toml < SLICE_* < flags), `find_config`
- `store`: `Store` (engine, read and write sessions, migrations on first use), `open_store`
- `turns`: `WriterTurns`, SQLite writers taking turns (a long writer gives way to waiting ones)
- `models`: the tables as SQLModel classes, their status enums, `utcnow`
- `migrations`: ordered, named schema migrations recorded in ``slice_migrations``
- `errors`: `NewsletterError` and its one-line subclasses
- `clock`: `Clock`, `SystemClock`, `FakeClock`, and `Spacing` (evenly spaced events)
- `project`: `init_project`, the folders and slice.toml of `slice init`
- `weeks`: ISO weeks, read one way everywhere (`--week` of papers and compose)
- `timezone`: the editor's time zone, what "this week" and readers' dates mean
- `words`: counted words in what a person reads ("1 paper", "2 papers")
"""
