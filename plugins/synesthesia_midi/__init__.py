"""MIDI plugin: melodies that follow the words, written as MIDI and rendered to audio.

The ``midi`` renderer sets a poem (English or Chinese) to a melody: prosody (``prosody``), a rhythm and
harmony template with pitches chosen under constraints from corpus statistics (``melody``), a MIDI file
with lyrics (``midi_file``), a WAV through FluidSynth or the built-in synthesizer (``audio``). With
``SYNESTHESIA_MIDI_PORT`` set, every new artwork is also played to that MIDI port (``live``).
Heavy modules (music21, torch, mido) load only when rendering.
"""

from __future__ import annotations

import os

import synesthesia
from synesthesia.components import RenderContext, Renderer

from .options import MidiOptions


def _render(context: RenderContext):
    from .render import render

    return render(context)


@synesthesia.hookimpl
def register_renderers(register):
    register(
        Renderer(
            name="midi",
            description=("A melody that follows the words: melody.mid with lyrics, "
                         "melody.wav (FluidSynth or built-in synth)."),
            options=MidiOptions,
            render=_render,
        )
    )


@synesthesia.hookimpl
def artwork_created(artwork):
    """Play the new melody to the MIDI port named by SYNESTHESIA_MIDI_PORT (installations); else nothing."""
    port = os.environ.get("SYNESTHESIA_MIDI_PORT")
    if not port:
        return
    midi_files = [p for p in artwork.files if p.name == "melody.mid"]
    if midi_files:
        from .live import play_to_port

        play_to_port(midi_files[0], port)
