"""The issue: from stored papers to a composed issue in the outbox.

- `select`: `select`, a pure function from papers (+ profile, week, choices) to a ranking
- `choices`: the editor's past pins and removals, and what selection learns from them
- `compose`: `compose_issue`, the step behind `slice compose`
- `issuefile`: issue.json, the editable selection
- `render`, `cards`, `htmlmail`, `templating`: issue.json + papers -> MJML -> email HTML,
  web copy and plain text
- `outbox`: `IssueFolder` and `RenderedIssue`, the contract between compose and send
"""
