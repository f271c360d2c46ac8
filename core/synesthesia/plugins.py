"""Plugin loading and the registry of what plugins contribute.

Every plugin, built-in or third-party, is a module exposed under the ``synesthesia`` entry-point group.
One broken plugin never takes the app down: it is skipped with a one-line warning that names it, unless
``SYNESTHESIA_STRICT_PLUGINS=1`` makes that fatal. ``SYNESTHESIA_PLUGINS=a,b`` loads only the named
plugins (an allowlist); unknown names in it are reported.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pluggy

from synesthesia import hookspecs
from synesthesia.components import Form, Renderer
from synesthesia.errors import ConfigError, PluginError

ENTRY_POINT_GROUP = "synesthesia"
ALLOWLIST_ENV = "SYNESTHESIA_PLUGINS"
STRICT_ENV = "SYNESTHESIA_STRICT_PLUGINS"


@dataclass
class PluginInfo:
    name: str
    version: str | None
    module: str
    hooks: list[str] = field(default_factory=list)
    error: str | None = None  # why it was skipped


def _strict() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _allowlist() -> set[str] | None:
    raw = os.environ.get(ALLOWLIST_ENV)
    if raw is None or not raw.strip():
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def _report(problem: str, outcome: str) -> None:
    """One line on stderr: ``warning: PROBLEM; OUTCOME`` (what happens instead), or, in strict mode, a
    PluginError that says the problem is fatal (and not what would otherwise have happened)."""
    problem = " ".join(problem.split())  # an exception's message may span lines; the report never does
    if _strict():
        raise PluginError(f"{problem} (fatal because {STRICT_ENV} is set; unset it to go on without it)")
    print(f"warning: {problem}; {outcome}", file=sys.stderr)


class Registry:
    """Loaded plugins and everything they registered, by name."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("synesthesia")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self._collected: dict[str, dict[str, tuple[str, Any]]] = {}

    # -- loading -------------------------------------------------------------------------------

    def load_entry_points(self) -> None:
        allow = _allowlist()
        seen: set[str] = set()
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in seen:
                continue
            seen.add(ep.name)
            if allow is not None and ep.name not in allow:
                continue
            version = ep.dist.version if ep.dist is not None else None
            info = PluginInfo(name=ep.name, version=version, module=ep.value)
            try:
                module = ep.load()
                self.pm.register(module, name=ep.name)
            except Exception as exc:  # a broken plugin must not take the app down
                info.error = f"{type(exc).__name__}: {exc}"
                self.plugins[ep.name] = info
                _report(f"plugin '{ep.name}' ({ep.value}) failed to load: {info.error}", "it is skipped")
                continue
            info.hooks = sorted(impl.name for impl in self.pm.get_hookcallers(module) or [])
            self.plugins[ep.name] = info
        if allow is not None:
            unknown = allow - seen
            if unknown:
                _report(f"{ALLOWLIST_ENV} names plugins that are not installed: {', '.join(sorted(unknown))}",
                        f"installed: {', '.join(sorted(seen)) or 'none'}")

    def register_module(self, module: Any, name: str) -> None:
        """Register a plugin object directly (for embedding Synesthesia in another program)."""
        self.pm.register(module, name=name)
        version = getattr(module, "__version__", None)
        hooks = sorted(impl.name for impl in self.pm.get_hookcallers(module) or [])
        self.plugins[name] = PluginInfo(name=name, version=version, module=getattr(module, "__name__", name),
                                        hooks=hooks)
        self._collected.clear()

    # -- collecting registrations --------------------------------------------------------------

    def _collect(self, hook_name: str, key: Callable[..., str],
                 value: Callable[..., Any]) -> dict[str, tuple[str, Any]]:
        """Call one ``register_*`` hook plugin by plugin, so one failure is attributed and contained."""
        if hook_name in self._collected:
            return self._collected[hook_name]
        found: dict[str, tuple[str, Any]] = {}
        caller = getattr(self.pm.hook, hook_name)
        # pluggy lists implementations last-registered first; reverse so earlier plugins win ties.
        for impl in reversed(caller.get_hookimpls()):
            plugin_name = impl.plugin_name

            def register(*args: Any, _plugin: str = plugin_name) -> None:
                name = key(*args)
                if name in found:
                    _report(f"plugin '{_plugin}' registers '{name}' in {hook_name}, already registered by "
                            f"'{found[name][0]}'", "keeping the first")
                    return
                found[name] = (_plugin, value(*args))

            try:
                impl.function(register=register)
            except PluginError:
                raise
            except Exception as exc:
                _report(f"plugin '{plugin_name}' failed in {hook_name}: {type(exc).__name__}: {exc}",
                        "it is skipped there")
        self._collected[hook_name] = found
        return found

    def generators(self) -> dict[str, Any]:
        return {n: v for n, (_, v) in self._collect("register_generators", lambda g: g.name, lambda g: g).items()}

    def forms(self) -> dict[str, Form]:
        return {n: v for n, (_, v) in self._collect("register_forms", lambda f: f.name, lambda f: f).items()}

    def renderers(self) -> dict[str, Renderer]:
        return {n: v for n, (_, v) in self._collect("register_renderers", lambda r: r.name, lambda r: r).items()}

    def checkpoints(self) -> dict[str, Path]:
        return {
            n: v for n, (_, v) in self._collect("register_checkpoints", lambda name, path: name,
                                                 lambda name, path: Path(path)).items()
        }

    def config_paths(self) -> list[str]:
        return list(self._collect("register_config_paths", lambda path: str(path), lambda path: str(path)))

    def owner(self, hook_name: str, name: str) -> str | None:
        """Which plugin registered ``name`` through ``hook_name``."""
        entry = self._collected.get(hook_name, {}).get(name)
        return entry[0] if entry else None

    # -- lookups with clear errors -------------------------------------------------------------

    def form(self, name: str) -> Form:
        forms = self.forms()
        if name in forms:
            return forms[name]
        for form in forms.values():
            if name in form.aliases:
                return form
        names = sorted(set(forms) | {a for f in forms.values() for a in f.aliases})
        raise ConfigError(f"unknown form '{name}'. Available forms: "
                          f"{', '.join(names) or 'none (no form plugin loaded)'}")

    def renderer(self, name: str) -> Renderer:
        renderers = self.renderers()
        if name not in renderers:
            raise ConfigError(f"unknown renderer '{name}'. Available renderers: "
                              f"{', '.join(sorted(renderers)) or 'none'}"
                              f" (is its plugin installed and allowed by {ALLOWLIST_ENV}?)")
        return renderers[name]

    def generator(self, name: str) -> Any:
        generators = self.generators()
        if name not in generators:
            raise ConfigError(f"unknown generator '{name}'. Available generators: "
                              f"{', '.join(sorted(generators)) or 'none'}")
        return generators[name]

    def resolve_checkpoint(self, name_or_path: str | os.PathLike) -> Path:
        """A registered checkpoint name, or a folder path; raise a clear error otherwise."""
        text = str(name_or_path)
        checkpoints = self.checkpoints()
        if text in checkpoints:
            return checkpoints[text]
        path = Path(text).expanduser()
        if path.is_dir():
            return path
        raise ConfigError(
            f"no model checkpoint named '{text}' and no folder at {path}. Registered checkpoints: "
            f"{', '.join(sorted(checkpoints)) or 'none'}; train one with `synesthesia train`"
        )

    def notify_artwork_created(self, artwork: Any) -> None:
        """Call every ``artwork_created`` hook; a failing listener is reported, never fatal."""
        for impl in reversed(self.pm.hook.artwork_created.get_hookimpls()):
            try:
                impl.function(artwork=artwork)
            except Exception as exc:
                print(f"warning: plugin '{impl.plugin_name}' failed in artwork_created: {type(exc).__name__}: {exc}",
                      file=sys.stderr)


# -- renderer options ------------------------------------------------------------------------------


@dataclass
class OptionSpec:
    """One option of a renderer, for errors, ``synesthesia plugins`` and ``synesthesia run --cfg job``."""

    name: str
    default: Any  # as JSON (a Path as its text); None when required
    type: str
    help: str = ""  # the field's ``description``
    required: bool = False
    alias: str | None = None


def _type_name(annotation: Any) -> str:
    import typing

    if typing.get_origin(annotation) is typing.Literal:
        return "|".join(str(a) for a in typing.get_args(annotation))
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("pathlib.", "")


def option_specs(options: Any) -> list[OptionSpec]:
    """The options a renderer's ``options`` model takes (a pydantic model or a dataclass; None: none)."""
    import dataclasses

    from pydantic_core import PydanticUndefined, to_jsonable_python

    specs = []
    fields = getattr(options, "model_fields", None)
    if isinstance(fields, dict):  # pydantic
        for name, info in fields.items():
            required = info.is_required()
            default = None if required else info.get_default(call_default_factory=True)
            if default is PydanticUndefined:
                default = None
            specs.append(OptionSpec(name, to_jsonable_python(default, fallback=str), _type_name(info.annotation),
                                    info.description or "", required, info.alias))
    elif options is not None and dataclasses.is_dataclass(options):
        for item in dataclasses.fields(options):
            factory: Any = item.default_factory
            missing = item.default is dataclasses.MISSING and factory is dataclasses.MISSING
            if item.default is not dataclasses.MISSING:
                default = item.default
            else:
                default = None if missing else factory()
            specs.append(OptionSpec(item.name, to_jsonable_python(default, fallback=str), _type_name(item.type),
                                    str(item.metadata.get("help", "")), missing))
    return specs


def option_defaults(renderer: Renderer) -> dict[str, Any]:
    """``{option: default}`` of a renderer's required-free options, as plain values (for the composed config)."""
    return {spec.name: spec.default for spec in option_specs(renderer.options) if not spec.required}


def validate_options(renderer: Renderer, raw: Any) -> Any:
    """The renderer's options built from ``raw`` (``renderer.<name>.*`` of the config), checked before any
    work. Options are strict for every renderer, whatever its model does with extra fields: a name it does
    not take is one ConfigError line listing the options it does take, with their defaults; a bad value is
    one line per field."""
    import difflib

    from pydantic import ValidationError

    raw = dict(raw or {})
    specs = option_specs(renderer.options)
    known = {spec.name for spec in specs} | {spec.alias for spec in specs if spec.alias}
    unknown = [str(key) for key in raw if key not in known]
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        takes = ", ".join(f"{s.name}={json.dumps(s.default, ensure_ascii=False)}" if not s.required
                          else f"{s.name} (required)" for s in specs) or "none"
        raise ConfigError(f"renderer '{renderer.name}' has no option {', '.join(repr(k) for k in unknown)}{hint}; "
                          f"its options (default): {takes}")
    if renderer.options is None:
        return None
    try:
        return renderer.options(**raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"renderer.{renderer.name}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"bad option for renderer '{renderer.name}': {problems}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad option for renderer '{renderer.name}': {' '.join(str(exc).split())}") from None


def config_groups(search_path: str) -> dict[str, list[str]]:
    """The config groups in a Hydra search path (``pkg://module.conf`` or ``file://folder``), each with its
    options: ``{"pipeline": ["word_stats"]}``. Only looks at the folder; Hydra reads the files when run."""
    from importlib import resources

    try:
        if search_path.startswith("pkg://"):
            root: Any = resources.files(search_path[len("pkg://"):])
        else:
            root = Path(search_path[len("file://"):] if search_path.startswith("file://") else search_path)
        groups = {}
        for entry in root.iterdir():
            if entry.is_dir():
                names = sorted(f.name[:-5] for f in entry.iterdir() if f.name.endswith(".yaml"))
                if names:
                    groups[entry.name] = names
        return dict(sorted(groups.items()))
    except (ImportError, OSError, TypeError):
        return {}


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loading entry-point plugins on first use."""
    global _registry
    if _registry is None:
        registry = Registry()
        registry.load_entry_points()
        _registry = registry
    return _registry


def resolve_checkpoint(name_or_path: str | os.PathLike) -> Path:
    return get_registry().resolve_checkpoint(name_or_path)
