"""``synesthesia serve``: one process that loads the models once and serves them and the artworks over HTTP.

Modules: ``app`` (the FastAPI app factory, settings, security), ``openai_api`` (the OpenAI-compatible API),
``artworks_api`` (jobs, artworks, files, events), ``jobs`` (the bounded queue and its one worker thread, the
event broker), ``index`` (the SQLite index of the artwork folders), ``models`` (the allowlisted models,
shared and locked), ``intent`` (HTTP intents to run configs), ``command`` (the click command).

Endpoints (all JSON unless said; errors are ``{"error": {"message": str, "type": str, "param": null,
"code": str|null}}`` with 400 bad values, 401 missing key, 404, 413 too large, 415 not JSON, 422 bad shape,
429 queue full with ``Retry-After``, 503 shutting down)::

    GET  /                         static/index.html when present (the gallery page), else a JSON map
    GET  /static/...               files of core/synesthesia/server/static/
    GET  /health                   {"status": "ok"|"stopping", "version", "uptime_s", "models": [id],
                                    "loaded": [id], "jobs": {"queued", "capacity", "running", "accepted",
                                    "succeeded", "failed", "abandoned"}, "artworks": int, "requests": int,
                                    "rss_mb", "peak_rss_mb", "pid"}
    GET  /v1/models                OpenAI list: {"object": "list", "data": [{"id", "object": "model",
                                    "created", "owned_by", "generator", "loaded"}]}
    POST /v1/completions           OpenAI completions (see ``openai_api``), "stream": true for SSE
    POST /v1/chat/completions      OpenAI chat completions, the last user message is the theme
    POST /v1/artworks              an intent -> 202 and a job (Location: /v1/jobs/ID)
    GET  /v1/jobs/{id}             a job
    GET  /v1/artworks              list and search, newest first
    GET  /v1/artworks/{id}         one artwork with its manifest
    GET  /v1/artworks/{id}/files/{path}   one of its files (paths as in "files")
    GET  /v1/events                server-sent events: artwork_created and job

Write endpoints (every POST) need ``Content-Type: application/json`` and, when the server has a key
(required to bind beyond loopback), ``Authorization: Bearer KEY`` (or ``X-API-Key: KEY``). Reads are open.

The intent (``POST /v1/artworks``; unknown keys are refused, values are checked as ``synesthesia run`` checks
them before anything is queued)::

    {"form": "七绝", "theme": "秋月", "seed": 3, "title": "", "prompt": "",
     "model": "auto" | a served model id,
     "renderers": ["poem_text", "poem_png", ...]   (default: all that apply),
     "options": {"poem_png": {"width": 1200}},      (renderer options; file/font/port options refused)
     "form_options": {...},
     "generation": {"temperature", "top_k", "top_p", "min_p", "repetition_penalty", "max_new_tokens",
                    "candidates" (≤ 16), "max_attempts" (≤ 5), "constrained"}}

A job::

    {"id": "20261130-024501-3fa9c2", "object": "job",
     "status": "queued" | "running" | "succeeded" | "failed" | "abandoned",
     "created", "started", "finished": ISO times or null, "seconds": float|null,
     "intent": {...}, "artwork_id": str|null, "artwork_url": "/v1/artworks/ID"|null,
     "error": str|null, "warnings": [str], "url": "/v1/jobs/ID"}

An artwork summary (the list's items, the event's data)::

    {"id": "20261130-024501-3fa9c2", "created": "2026-11-30T02:45:03+00:00", "form": "七绝",
     "language": "zh", "theme": "秋月", "title": "", "text": "...", "model": "tang", "seed": 3,
     "revision": 1, "valid": true, "files": ["manifest.json", "poem_text/poem.txt", "midi/melody.wav", ...],
     "url": "/v1/artworks/ID", "files_url": "/v1/artworks/ID/files/"}

    GET /v1/artworks?q=&theme=&form=&model=&language=&since=&until=&limit=50&offset=0
      q: text, theme or title contains it; theme: contains; form, model, language: equal;
      since/until: 2026-11-30 or an ISO time (a date's until includes that day); limit ≤ 10000
      -> {"object": "list", "data": [summary], "total": int, "limit": int, "offset": int}
    GET /v1/artworks/{id} -> {summary..., "manifest": the artwork's manifest.json (model, seed, config,
      revisions, renderers, files with sha256, ...)}
    GET /v1/artworks/{id}/files/{path} -> the file (path as listed in "files"; nothing else is served)

Artworks written into the folder by other processes (``synesthesia run``, an installation loop) are indexed and
announced within ``--rescan`` seconds (default 5), as are the server's own the moment they are published.

The event stream (``text/event-stream``; reconnect with ``Last-Event-ID`` to get missed events)::

    id: 12
    event: artwork_created
    data: {artwork summary}

    id: 13
    event: job
    data: {job}

e.g. in a page: ``new EventSource("/v1/events").addEventListener("artwork_created", e => show(JSON.parse(e.data)))``.
"""
