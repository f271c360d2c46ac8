"""Plugin loading: entry points, broken plugins, the allowlist, strict mode, documented hooks."""

from __future__ import annotations

import inspect
import json

import pytest

from synesthesia import hookspecs
from tests.conftest import make_plugin_dist, run_cli

BROKEN = """
raise RuntimeError("this plugin is broken on purpose")
"""

GOOD = """
import synesthesia
from pydantic import BaseModel
from synesthesia.components import Renderer

class Opts(BaseModel):
    loud: bool = True

def render(ctx):
    path = ctx.out_dir / "shout.txt"
    path.write_text(ctx.text.upper(), encoding="utf-8")
    return [path]

@synesthesia.hookimpl
def register_renderers(register):
    register(Renderer(name="shout", description="upper case", options=Opts, render=render))
"""

RAISES_IN_HOOK = """
import synesthesia

@synesthesia.hookimpl
def register_forms(register):
    raise ValueError("cannot build my forms")
"""


def test_every_hook_is_documented():
    specs = [name for name, obj in inspect.getmembers(hookspecs, inspect.isfunction)
             if hasattr(obj, "synesthesia_spec")]
    assert {"register_generators", "register_forms", "register_renderers", "artwork_created"} <= set(specs)
    for name in specs:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert len(doc.split()) >= 8, f"hook {name} needs a docstring that explains it"


def test_builtin_plugins_are_listed_as_json():
    result = run_cli("plugins", "--json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    names = {p["name"] for p in listing["plugins"]}
    assert "transformer" in names
    transformer = next(p for p in listing["plugins"] if p["name"] == "transformer")
    assert "register_generators" in transformer["hooks"]
    assert transformer["generators"] == ["transformer"]


def test_broken_plugin_is_skipped_with_a_warning(plugin_dir):
    folder, env = plugin_dir
    make_plugin_dist(folder, "broken_plugin", BROKEN)
    make_plugin_dist(folder, "shout_plugin", GOOD)
    result = run_cli("plugins", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ("warning: plugin 'broken_plugin' (broken_plugin) failed to load: RuntimeError: "
                             "this plugin is broken on purpose; it is skipped\n"), "one line, not a Python warning"
    listing = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    assert listing["broken_plugin"]["error"].startswith("RuntimeError")
    assert listing["shout_plugin"]["renderers"] == ["shout"]
    assert "transformer" in listing and listing["transformer"]["error"] is None


def test_strict_mode_makes_a_broken_plugin_fatal(plugin_dir):
    folder, env = plugin_dir
    make_plugin_dist(folder, "broken_plugin", BROKEN)
    result = run_cli("plugins", env={**env, "SYNESTHESIA_STRICT_PLUGINS": "1"})
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: plugin 'broken_plugin'"), result.stderr
    assert "fatal because SYNESTHESIA_STRICT_PLUGINS is set" in result.stderr and "skipped" not in result.stderr


def test_a_plugin_that_raises_inside_a_hook_is_contained(plugin_dir):
    folder, env = plugin_dir
    make_plugin_dist(folder, "raising_plugin", RAISES_IN_HOOK)
    result = run_cli("plugins", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert "raising_plugin" in result.stderr and "cannot build my forms" in result.stderr


def test_allowlist_chooses_plugins_and_reports_unknown_names(plugin_dir):
    folder, env = plugin_dir
    make_plugin_dist(folder, "shout_plugin", GOOD)
    result = run_cli("plugins", "--json", env={**env, "SYNESTHESIA_PLUGINS": "shout_plugin,nosuchplugin"})
    assert result.returncode == 0, result.stderr
    names = {p["name"] for p in json.loads(result.stdout)["plugins"]}
    assert names == {"shout_plugin"}
    assert "nosuchplugin" in result.stderr


def test_help_is_fast_because_heavy_modules_are_lazy():
    import subprocess
    import sys

    code = ("import sys; from synesthesia.cli import cli; import synesthesia.plugins as p; p.get_registry(); "
            "heavy = [m for m in ('torch', 'hydra', 'PIL', 'music21', 'matplotlib') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported at start-up: {out.stdout.strip()}"


@pytest.mark.parametrize("arg,expected", [
    ("form=七绝", "form='七绝'"),
    ("form=七绝,haiku", "form='七绝',haiku"),
    ("theme=winter sea", "theme='winter sea'"),  # same value for Hydra, quoted like any free text
    ("theme='秋月'", "theme='秋月'"),
    ("theme=a keeper's night", "theme='a keeper\\'s night'"),
    ("theme=${oc.env:HOME}", "theme='\\${oc.env:HOME}'"),  # escaped: never interpolated
    ("hydra.run.dir=out/${now:%H}", "hydra.run.dir=out/${now:%H}"),  # Hydra's own settings are Hydra's
    ("seed=3", "seed=3"),
    ("-m", "-m"),
])
def test_non_ascii_overrides_are_quoted_for_hydra(arg, expected):
    from synesthesia.config import quote_override

    assert quote_override(arg) == expected


def test_renderer_and_form_options_may_add_keys():
    from synesthesia.config import prepare_override

    assert prepare_override("renderer.poem_png.width=900") == "++renderer.poem_png.width=900"
    assert prepare_override("form_options.head=春夏秋冬") == "++form_options.head='春夏秋冬'"
    assert prepare_override("++renderer.x.y=1") == "++renderer.x.y=1"


def test_plugins_lists_hook_docs_forms_renderer_options_and_config_groups(plugin_dir):
    folder, env = plugin_dir
    make_plugin_dist(folder, "shout_plugin", GOOD)
    result = run_cli("plugins", "--json", env=env)
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert listing["hooks"]["register_renderers"] == inspect.getdoc(hookspecs.register_renderers)
    plugins = {p["name"]: p for p in listing["plugins"]}
    assert plugins["shout_plugin"]["renderers"] == ["shout"]
    shout = plugins["shout_plugin"]["renderer_details"][0]
    assert shout["name"] == "shout" and shout["options"] == [
        {"name": "loud", "default": True, "type": "bool", "help": "", "required": False, "alias": None}]
    png = next(r for r in plugins["poetry"]["renderer_details"] if r["name"] == "poem_png")
    width = next(o for o in png["options"] if o["name"] == "width")
    assert (width["default"], width["help"]) == (1200, "page width in pixels")
    haiku = next(f for f in plugins["poetry"]["form_details"] if f["name"] == "haiku")
    assert haiku["language"] == "en" and "5, 7 and 5" in haiku["description"]
    assert plugins["hf"]["config_groups"] == [{"path": "pkg://synesthesia_hf.conf", "groups": {"model": ["hf"]}}]
    assert "tang" in listing["config_groups"]["groups"]["model"]

    text = run_cli("plugins", env=env)
    assert text.returncode == 0, text.stderr
    assert "  register_renderers: Contribute renderers" in text.stdout
    assert "        loud=true  (bool)" in text.stdout
    assert "        width=1200  (int)  page width in pixels" in text.stdout
    assert "config groups (pkg://synesthesia_hf.conf): model=hf" in text.stdout


def test_cfg_job_shows_every_renderers_options_with_defaults(plugin_dir):
    import yaml

    folder, env = plugin_dir
    make_plugin_dist(folder, "shout_plugin", GOOD)
    result = run_cli("run", "--cfg", "job", "renderer.poem_png.width=900", env=env)
    assert result.returncode == 0, result.stderr
    renderer = yaml.safe_load(result.stdout)["renderer"]
    assert renderer["shout"] == {"loud": True}
    assert renderer["poem_png"]["width"] == 900 and renderer["poem_png"]["seal_text"] == "通感之印"
    assert renderer["poem_svg"]["width"] == 1200
