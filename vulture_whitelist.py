"""Names vulture cannot see used (see [tool.vulture] in pyproject.toml).

Attributes read only by templates, and attributes that a library reads.
"""

from newsletter.issue.cards import PaperCard
from newsletter.papers.search import SearchPage, SearchParams
from newsletter.web.archive import PaperView
from newsletter.web.signup import SignupForm

# read by the email templates (templates/email/*.mjml, issue.txt)
PaperCard.title_html
PaperCard.preprint_url
PaperCard.anchor

# read by the archive template (templates/web/index.html)
SearchParams.filtered
SearchPage.searched
SearchPage.first_index
SearchPage.page_links
SignupForm.honeypot
PaperView.long_abstract

# read by libraries: the sqlite3 connection, Jinja2, itsdangerous, aiosmtpd, uvicorn
_.isolation_level
_.finalize
_.get_timestamp
_.host_name
_.should_exit
_.format_commands  # click calls it to list a group's commands (newsletter/cli/base.py)
_.nullable  # SQLAlchemy reads a Column's (tests/test_schema.py sets one wrong on purpose)

# uvicorn imports the app factory by name (`slice serve --workers N`)
_.worker_app

# when an email was queued: for a person reading the mail_queue table
_.queued_at

# read by llm: the fake model plugin of the story-draft tests (tests/llm_fake_plugin.py)
_.model_id
_.can_stream
_.register_models
_.conversation

# a setting, documented in slice.toml
_.editor_address
