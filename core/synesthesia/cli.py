"""The ``synesthesia`` command line. Heavy modules are imported inside each command, so ``--help`` is fast."""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

import click

from synesthesia import __version__
from synesthesia.errors import SynesthesiaError
from synesthesia.fileio import DISK_ERRORS

DEBUG_ENV = "SYNESTHESIA_DEBUG"


# Commands that live in their own modules ("name": "module:attribute", a click command), imported only
# when run or listed, so that `synesthesia --help` stays fast.
LAZY_COMMANDS: dict[str, str] = {
    "batch": "synesthesia.batch:batch",
    "export": "synesthesia.export:export",
    "installation": "synesthesia.installation:installation",
    "serve": "synesthesia.server.command:serve",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS and name not in self.commands:
            import importlib

            module, attribute = LAZY_COMMANDS[name].split(":")
            self.add_command(getattr(importlib.import_module(module), attribute), name)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="synesthesia")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def cli(debug: bool) -> None:
    """Synesthesia: our own transformer writes poems; plugins turn them into layouts, melodies and image prompts.

    \b
    Quick start:
      synesthesia run form=七绝 theme=秋月          one artwork (text, layouts, MIDI, prompts, manifest)
      synesthesia run -m form=haiku,七绝 theme=sea  a sweep (Hydra multirun)
      synesthesia generate "winter sea" --form haiku
      synesthesia render outputs/…/RUN_DIR         re-render after editing artwork/text.txt
      synesthesia plugins                          what is installed
    """
    if debug:
        os.environ[DEBUG_ENV] = "1"


def _hydra_argv(overrides: tuple[str, ...]) -> list[str]:
    from synesthesia.config import prepare_override

    # A comma separates sweep values only in a sweep (-m); in a single run it is part of the text.
    sweep = any(arg in ("-m", "--multirun") for arg in overrides)
    return [prepare_override(arg, sweep) for arg in overrides]


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
def run(overrides: tuple[str, ...]) -> None:
    """Make an artwork with a Hydra-composed pipeline.

    OVERRIDES are Hydra overrides: form=七绝 theme=秋月 seed=3 model.name=tang generation.candidates=16
    pipeline.renderers=[poem_png,midi] renderer.poem_png.width=1200. Add -m for a sweep
    (form=haiku,sonnet theme=autumn,sea) and hydra/launcher=joblib to run the sweep in parallel.
    Use --cfg job to print the composed config, --help for Hydra's own help.
    """
    from synesthesia.app import run_hydra_app

    run_hydra_app(_hydra_argv(overrides))


def _run_default(key: str) -> str:
    """A ``synesthesia run`` default for an option's help (the structured config is their one source)."""
    from synesthesia.config import RunConfig

    value: object = RunConfig()
    for part in key.split("."):
        value = getattr(value, part)
    return f"[default: {value}, as for `run`]"


# `generate`'s options: each sets one setting of the config `synesthesia run` composes (unset: run's default).
GENERATE_OPTIONS = {"form_name": "form", "model_name": "model.name", "seed": "seed",
                    "temperature": "generation.temperature", "top_k": "generation.top_k",
                    "top_p": "generation.top_p", "repetition_penalty": "generation.repetition_penalty",
                    "max_tokens": "generation.max_new_tokens"}


@cli.command()
@click.argument("prompt", required=False, default="")
@click.option("--form", "form_name", default=None,
              help=f"Writing form (see `synesthesia plugins`) {_run_default('form')}.")
@click.option("--theme", default=None, help="Theme keywords; defaults to PROMPT.")
@click.option("--model", "model_name", default=None, help=f"Checkpoint name or folder {_run_default('model.name')}.")
@click.option("--seed", default=None, type=int, help=_run_default("seed"))
@click.option("--temperature", default=None, type=float, help=_run_default("generation.temperature"))
@click.option("--top-k", default=None, type=int, help=_run_default("generation.top_k"))
@click.option("--top-p", default=None, type=float, help=_run_default("generation.top_p"))
@click.option("--repetition-penalty", default=None, type=float, help=_run_default("generation.repetition_penalty"))
@click.option("--max-tokens", default=None, type=int, help="Token budget (0: the form's own).")
@click.option("--unconstrained", is_flag=True, help="Decode without the form's constraints.")
def generate(prompt: str, theme: str | None, unconstrained: bool, **options: object) -> None:
    """Write one text quickly and stream it to the terminal (no files written).

    The settings are those of `synesthesia run` (the same config, defaults and checks); the options change one each.
    """
    from synesthesia.app import generate_streaming

    overrides = [f"{GENERATE_OPTIONS[name]}={value}" for name, value in options.items() if value is not None]
    overrides += [f"prompt={prompt}", f"theme={theme if theme is not None else prompt}"]
    if unconstrained:
        overrides.append("generation.constrained=false")
    generate_streaming(overrides)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Re-render even if text.txt is unchanged.")
def render(run_dir: Path, force: bool) -> None:
    """Re-render every medium from the edited artwork/text.txt of RUN_DIR, keeping the previous revision."""
    from synesthesia.pipeline import render_revision

    artwork = render_revision(run_dir, force=force, log=lambda m: click.echo(m, err=True))
    verdict = artwork.manifest.get("validation") or {}
    broken = f" (does not obey its form: {len(verdict.get('problems') or [])} problem(s), see above)" \
        if verdict and not verdict.get("ok") else ""
    click.echo(f"revision {artwork.manifest.get('revision')}: {artwork.path}{broken}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def plugins(as_json: bool) -> None:
    """List the hooks a plugin may implement, the installed plugins (name, version, hooks), and what each
    registers: forms, renderers with their options (renderer.NAME.OPTION=value), config groups."""
    from synesthesia.app import plugin_listing

    listing = plugin_listing()
    if as_json:
        click.echo(json.dumps(listing, ensure_ascii=False, indent=2))
        return
    click.echo("Hooks (synesthesia.hookspecs; implement them with @synesthesia.hookimpl):")
    for hook, doc in listing["hooks"].items():
        click.echo(f"  {hook}: {doc.split(chr(10) + chr(10))[0].replace(chr(10), ' ')}")

    def groups(section: dict) -> str:
        return "; ".join(f"{group}={'|'.join(names)}" for group, names in section["groups"].items())

    click.echo(f"\nConfig groups of the core: {groups(listing['config_groups'])}")
    click.echo("\nPlugins:")
    for plugin in listing["plugins"]:
        status = f"SKIPPED: {plugin['error']}" if plugin["error"] else ", ".join(plugin["hooks"])
        click.echo(f"{plugin['name']} {plugin['version'] or ''}  [{status}]")
        for kind in ("generators", "checkpoints"):
            if plugin.get(kind):
                click.echo(f"    {kind}: {', '.join(plugin[kind])}")
        for form in plugin.get("form_details", []):
            aliases = f" (also {', '.join(form['aliases'])})" if form["aliases"] else ""
            language = form["language"] or "any language"
            click.echo(f"    form {form['name']}{aliases} [{language}]: {form['description']}")
        for renderer in plugin.get("renderer_details", []):
            click.echo(f"    renderer {renderer['name']}: {renderer['description']}")
            for option in renderer["options"]:
                default = "required" if option["required"] else json.dumps(option["default"], ensure_ascii=False)
                help_ = f"  {option['help']}" if option["help"] else ""
                click.echo(f"        {option['name']}={default}  ({option['type']}){help_}")
        for section in plugin.get("config_groups", []):
            click.echo(f"    config groups ({section['path']}): {groups(section) or 'none found'}")


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
def train(overrides: tuple[str, ...]) -> None:
    """Train (or resume, or fine-tune) a model. OVERRIDES are Hydra overrides of conf/train.yaml
    (every option and default: synesthesia.train.TrainConfig; presets: train=tiny|tang|shakespeare|verse).

    \b
    e.g. synesthesia train data.paths=[my_poems/] out_dir=runs/mine
         synesthesia train out_dir=runs/mine resume=true   (the run's saved config; optim.max_iters=N: longer)
         synesthesia train init_from=tang data.paths=[mine.txt] out_dir=runs/mine-tang
         torchrun --nproc_per_node=2 -m synesthesia train ...   (data-parallel)
    """
    from synesthesia.train import main as train_main

    train_main(_hydra_argv(overrides))


@cli.command()
@click.argument("text")
@click.option("--model", "model_name", default="shakespeare", show_default=True, help="Checkpoint name or folder.")
@click.option("--layer", type=int, default=None, help="Layer index (default: all).")
@click.option("--head", type=int, default=None, help="Head index (default: all).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("attention"), show_default=True)
def attention(text: str, model_name: str, layer: int | None, head: int | None, out_dir: Path) -> None:
    """Save heatmap PNGs of the model's attention weights over TEXT."""
    from synesthesia.attention import save_attention_maps
    from synesthesia.plugins import resolve_checkpoint

    paths = save_attention_maps(resolve_checkpoint(model_name), text, out_dir, layer=layer, head=head)
    for path in paths:
        click.echo(str(path))


@cli.command()
@click.option("--model", "model_name", required=True, help="Checkpoint name or folder.")
@click.option("--heldout", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Held-out text for perplexity.")
@click.option("--references", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Reference texts (one per line) for BLEU.")
@click.option("--prompts", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Prompts (one per line) whose generations are scored.")
@click.option("--samples", default=8, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int)
def evaluate(model_name: str, heldout: Path | None, references: Path | None, prompts: Path | None, samples: int,
             seed: int) -> None:
    """Perplexity on held-out text, BLEU against references (sacrebleu), distinct-1/2 of generations."""
    from synesthesia.evaluate import evaluate as run_evaluation
    from synesthesia.plugins import resolve_checkpoint

    def lines(path: Path | None) -> list[str] | None:
        if path is None:
            return None
        try:
            return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError:
            raise SynesthesiaError(f"{path} is not UTF-8 text; give a text file") from None

    result = run_evaluation(
        resolve_checkpoint(model_name),
        heldout_text=heldout,  # read (and checked) by evaluate
        references=lines(references), prompts=lines(prompts), n_samples=samples, seed=seed,
    )
    click.echo(json.dumps(result, ensure_ascii=False, indent=2))


@cli.group()
def corpus() -> None:
    """Prepare training corpora (classical Chinese, English, your own folder)."""


@corpus.command("prepare", context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                             "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def corpus_prepare(args: tuple[str, ...]) -> None:
    """Prepare a corpus (chinese-poetry, a text file, or a folder of .txt/.md/.jsonl) as a training set.

    ARGS: SOURCE --out DIR [--forms 五绝,七绝] [--simplified] [--language zh|en] [--val-fraction F] ...
    (`synesthesia corpus prepare --help` lists them all).
    """
    from synesthesia.corpus import main as corpus_main

    corpus_main(list(args))


def main(argv: list[str] | None = None) -> None:
    """Entry point: one clear line for user errors, a traceback only with --debug."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get(DEBUG_ENV) == "1"
    try:
        cli.main(args=args, prog_name="synesthesia", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except SynesthesiaError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:
        # A full, read-only or forbidden disk in any command (train, corpus prepare, …): files are written
        # aside and renamed into place, so what was there before is still whole.
        if debug or exc.errno not in DISK_ERRORS:
            raise
        click.echo(f"Error: cannot write {exc.filename or 'a file'}: {exc.strerror}; nothing already written "
                   "was lost: free space or fix permissions and run it again", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
