"""The issue: from stored papers to a composed issue in the outbox.

- `window`: `Window`, `week_window`, `last_complete_week`: the dates an issue covers
- `scoring`: `Profile`, words, weighted terms and BM25: how well a paper fits the profile
- `choices`: the editor's past pins and removals, and `EditorModel`, what selection learns
- `select`: `select`, a pure function from papers (+ profile, window, model) to a ranking
- `compose`: `compose_issue`, the step behind `slice compose`
- `issueedits`: issue.json from a selection, the editor's --pin/--exclude applied to a kept
  one, and what the editor did (for learning)
- `finish`: a rendered issue checked whole (or the paper that broke it named), then the
  outbox files written atomically
- `issuefile`: issue.json, the editable selection
- `abstracts`: an abstract's sections and their roles, its sentences and its figures
- `stories`: `fill_drafts`, story drafts for the featured papers (extractive, or an llm model)
- `storydraft`: `StoryDraft`, the extractive draft from an abstract, the checks any draft passes
- `render`, `cards`, `htmlmail`, `templating`: issue.json + papers -> MJML -> email HTML,
  web copy and plain text
- `outbox`: `IssueFolder` and `RenderedIssue`, the contract between compose and send
- `lifecycle`: an issue's life: draft -> sending -> sent, or a draft discarded
- `candidates`: the week's candidates, read as plain rows
- `relevance`: the relevance floor: each paper's profile score and on-topic flag
- `linkcheck`: links that would lead a reader nowhere (loopback and private hosts)
"""
