"""The default templates (email, confirmation and welcome email, web pages): one copy of each.

This folder is shipped as the package data ``newsletter.templates`` (see
pyproject.toml); `newsletter.issue.templating` finds it there, in a wheel and in
an editable install alike. A project's own templates/ folder overrides any file.
"""
