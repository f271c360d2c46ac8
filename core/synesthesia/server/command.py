"""``synesthesia serve``: the click command. FastAPI and uvicorn are imported only when it runs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything beyond loopback needs --api-key (or SYNESTHESIA_API_KEY).")
@click.option("--port", default=8000, show_default=True, type=int, help="Port (0: any free port, printed).")
@click.option("--artworks", type=click.Path(path_type=Path, file_okay=False), default=Path("gallery"),
              show_default=True, help="Folder of artworks: jobs write here, the index lives here.")
@click.option("--api-key", default=None, help="Key for every write endpoint (Authorization: Bearer KEY). "
                                              "Default: $SYNESTHESIA_API_KEY.")
@click.option("--model", "models", multiple=True,
              help="A model to serve (repeat for more): a checkpoint name or folder, or GENERATOR:NAME. "
                   "Default: the shipped models. Nothing else is reachable over HTTP.")
@click.option("--queue-size", default=16, show_default=True, type=click.IntRange(1, 10000),
              help="Jobs waiting at most; more get 429 with Retry-After.")
@click.option("--grace", default=30.0, show_default=True, type=float,
              help="Seconds the job in hand gets to finish at shutdown before it is abandoned.")
@click.option("--max-body", "max_body", default=64 * 1024, show_default=True, type=int,
              help="Largest request body in bytes (413 beyond).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 256),
              help="CPU threads for decoding.")
@click.option("--compile", "compile_", is_flag=True,
              help="torch.compile each transformer's decoding step: ~20-30% faster per token after a compile of "
                   "~5-35 s per model and number of candidates (model.compile).")
@click.option("--preload/--no-preload", default=True, show_default=True,
              help="Load every served model before accepting requests.")
@click.option("--rescan", default=5.0, show_default=True, type=float,
              help="Seconds between looks for artworks other processes write into --artworks (0: never).")
@click.option("--share-models", is_flag=True,
              help="One copy of each model for the API and the jobs (less memory; chats wait while a job decodes).")
@click.option("--warm-up/--no-warm-up", "warm_up", default=True, show_default=True,
              help="Make one throw-away artwork per language first, so the first request is as fast as the rest.")
def serve(host: str, port: int, artworks: Path, api_key: str | None, models: tuple[str, ...], queue_size: int,
          grace: float, max_body: int, threads: int, compile_: bool, preload: bool, rescan: float,
          share_models: bool, warm_up: bool) -> None:
    """Serve the models and the artworks over HTTP: an OpenAI-compatible API, artwork jobs, a live event stream.

    \b
      synesthesia serve                                 127.0.0.1:8000, artworks in ./gallery
      synesthesia serve --model tang --model verse      only these models
      synesthesia serve --host 0.0.0.0 --api-key KEY    on the network: writes need the key
    """
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    from synesthesia.server.app import API_KEY_ENV, Settings, check_bind

    settings = Settings(artworks=artworks, host=host, port=port, api_key=api_key or os.environ.get(API_KEY_ENV) or None,
                        models=list(models), queue_size=queue_size, grace=grace, max_body_bytes=max_body,
                        threads=threads, compile=compile_, warm_up=warm_up, share_models=share_models,
                        rescan=rescan)
    check_bind(settings)  # before anything slow: one line, exit 1
    run_server(settings, preload=preload)


def run_server(settings, *, preload: bool = True) -> None:
    import uvicorn

    from synesthesia.server.app import ServerState, create_app

    state = ServerState(settings)
    if preload:
        state.models.preload()
    app = create_app(settings, state)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):  # SIGINT/SIGTERM: end event streams and stop taking jobs first
            state.begin_shutdown()
            super().handle_exit(sig, frame)
            # A graceful stop is a clean exit (status 0), not the signal's default death afterwards.
            if hasattr(self, "_captured_signals"):
                self._captured_signals.clear()

        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            for server in getattr(self, "servers", []):
                for sock in server.sockets:
                    address = sock.getsockname()
                    click.echo(f"synesthesia serve: http://{_host(address[0])}:{address[1]} "
                               f"(artworks in {state.root}; models: {', '.join(state.models.served)})", err=True)
                    sys.stderr.flush()
                    break

    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                            timeout_graceful_shutdown=max(5, int(settings.grace) + 5), access_log=False,
                            limit_concurrency=256, timeout_keep_alive=5)
    Server(config).run()
    stats = state.jobs.stats()
    click.echo(f"synesthesia serve: stopped ({stats.get('succeeded', 0)} artworks made, {stats.get('failed', 0)} "
               f"failed, {stats.get('abandoned', 0)} abandoned)", err=True)


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address
