"""The hooks a Synesthesia plugin may implement.

A plugin is a module (or package) exposed under the ``synesthesia`` entry-point group. It implements any
of these hooks with ``@synesthesia.hookimpl``. Each ``register_*`` hook receives a ``register`` callback
and calls it once per thing it contributes, in the style of simonw/llm::

    import synesthesia

    @synesthesia.hookimpl
    def register_renderers(register):
        register(Renderer(name="shout", description="Upper-case text.", options=ShoutOptions, render=shout))

Every hook here has a docstring; ``synesthesia plugins`` and the docs are built from them, and a test fails
when a hook is undocumented.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("synesthesia")
hookimpl = pluggy.HookimplMarker("synesthesia")


@hookspec
def register_generators(register):
    """Contribute text generators (backends that write the text).

    Call ``register(generator)`` with an object satisfying ``synesthesia.components.Generator``. The core
    transformer is one, registered by the built-in ``transformer`` plugin under the name ``transformer``.
    """


@hookspec
def register_forms(register):
    """Contribute writing forms (haiku, 七绝, sonnet, screenplay scene, ...).

    Call ``register(form)`` with a ``synesthesia.components.Form``: a name, a conditioning recipe, optional
    logits processors that constrain decoding, and a validator that scores whether a text obeys the form.
    Build them from the form toolkit, the pieces the built-in forms use: ``synesthesia.forms`` (the
    ``Tokenizer`` protocol, line counts, masking helpers, composable validators, primers) and
    ``synesthesia_poetry.toolkit`` (syllables, dictionary words, rhyme, 平仄); see ``docs/plugins.md``.
    """


@hookspec
def register_renderers(register):
    """Contribute renderers that turn the final text into artifacts (layouts, MIDI, image prompts, ...).

    Call ``register(renderer)`` with a ``synesthesia.components.Renderer``. Its ``options`` is a pydantic
    model whose every field has a default (``Field(default, description="...")``: the description is the
    option's help in ``synesthesia plugins``). Options are strict for every renderer: a name the model does
    not declare is rejected by the framework (even if the model allows extra fields), with the list of the
    options and their defaults; bad values are reported by field name; both before any work starts.
    """


@hookspec
def register_checkpoints(register):
    """Contribute named model checkpoints (folders written by ``synesthesia train``).

    Call ``register(name, path)``; ``model.name=NAME`` in a pipeline then loads that folder.
    """


@hookspec
def register_config_paths(register):
    """Contribute Hydra config search paths, so a plugin can ship its own config groups.

    Call ``register("pkg://your_package.conf")`` (or a ``file://`` path). Groups found there compose with
    the built-in ones, e.g. ``synesthesia run pipeline=my_pipeline``.
    """


@hookspec
def artwork_created(artwork):
    """Notification: a finished artwork was written (a ``synesthesia.components.Artwork``).

    Called after the run directory holds the text, every renderer's files and ``manifest.json``, and
    again after ``synesthesia render`` makes a new revision. For installations, galleries and live outputs.
    An exception here is reported as a warning and never loses the artwork.
    """
